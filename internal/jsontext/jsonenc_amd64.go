package jsontext

// skipPlain16 returns how many leading bytes of b need no escaping in a
// JSON string and are ASCII, counted in whole 16-byte blocks: the index of
// the first special byte, or len(b) rounded down to a multiple of 16 when
// those blocks hold none. Callers go on from there a word or a byte at a
// time.
//
//go:noescape
func skipPlain16(b []byte) int
