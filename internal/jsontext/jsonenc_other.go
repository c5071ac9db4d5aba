//go:build !amd64

package jsontext

// skipPlain16 skips nothing where there is no vector version: callers go
// on a word at a time from the start.
func skipPlain16(b []byte) int { return 0 }
