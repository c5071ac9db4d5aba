package jsontext

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
	"unsafe"

	"github.com/apimeter/apimeter"
)

const hexDigits = "0123456789abcdef"

// plain marks the ASCII bytes that go into a JSON string as they are.
var plain = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// special8 returns a mask of the 8 bytes at b[i:] that need escaping or
// are not ASCII: below 0x20, a quote, a backslash, or 0x80 and above (SWAR:
// a byte-wise test on one 64-bit word). Only the lowest set byte is exact
// (a borrow can mark bytes above it), which is all the encoder uses: it
// jumps straight to that byte.
func special8(b []byte, i int) uint64 {
	x := binary.LittleEndian.Uint64(b[i:])
	q, bs := x^('"'*lsb), x^('\\'*lsb)
	return (x | ((x - 0x20*lsb) &^ x) | ((q - lsb) &^ q) | ((bs - lsb) &^ bs)) & msb
}

// PlainRun returns the index of the first byte from i on that is not plain
// ASCII, a word or a 16-byte block at a time, or where fewer than 8 bytes
// are left. It lands
// on that byte rather than on its word: in JSON text, with a quote every
// few bytes, stepping a byte at a time to the next word cost more than the
// escaping. A function of its own so that the loop keeps its few values in
// registers.
//
//go:noinline
func PlainRun(b []byte, i int) int {
	// Four words first: in JSON text the next quote is rarely further, and
	// the block scan's call costs more than a few bytes of it save.
	for w := 0; w < 4 && i+8 <= len(b); w++ {
		if m := special8(b, i); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
		i += 8
	}
	if len(b)-i >= 32 {
		// A long plain run (a text body, a long header value): 16 bytes a
		// step.
		i += skipPlain16(b[i:])
	}
	for i+8 <= len(b) {
		if m := special8(b, i); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
		i += 8
	}
	return i
}

// AppendString appends s to dst as a JSON string; invalid UTF-8
// becomes U+FFFD, as encoding/json does. It does not allocate beyond
// growing dst, for the encoders on hot paths (capture sink, store rows).
func AppendString(dst []byte, s string) []byte {
	dst, _ = appendJSONString(dst, s, false)
	return dst
}

// AppendText is AppendString for text that must arrive unchanged:
// when s is not valid UTF-8 it returns dst as it was and false. It checks
// and escapes in one pass, where utf8.Valid and then AppendString would
// read s twice.
func AppendText(dst []byte, s string) ([]byte, bool) {
	return appendJSONString(dst, s, true)
}

// appendJSONString appends s as a JSON string. An invalid UTF-8 sequence
// becomes U+FFFD, or with strict ends the call: it then returns dst
// unchanged and false.
func appendJSONString(dst []byte, s string, strict bool) ([]byte, bool) {
	at := len(dst)
	dst = append(dst, '"')
	// A byte view of s for 64-bit loads; it is only read.
	b := unsafe.Slice(unsafe.StringData(s), len(s))
	start := 0
	for i := 0; i < len(s); {
		if i+8 <= len(s) {
			if i = PlainRun(b, i); i >= len(s) {
				break
			}
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if plain[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			if strict {
				return dst[:at], false
			}
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			// Valid JSON, but they end lines in JavaScript readers.
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"'), true
}

// AppendHeaders appends h to dst as a JSON object of names to values,
// in order.
func AppendHeaders(dst []byte, h apimeter.Headers) []byte {
	dst = append(dst, '{')
	for i, kv := range h {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, kv.Name)
		dst = append(dst, ':')
		dst = AppendString(dst, kv.Value)
	}
	return append(dst, '}')
}
