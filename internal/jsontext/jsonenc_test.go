package jsontext

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzAppendString checks that any string is encoded as a JSON string that
// decodes to the same text (invalid UTF-8 becoming U+FFFD).
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "q\"b\\", "\x00\x1f\n", "é\u2028\u2029", "\xff\xfe", strings.Repeat("ab", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q encoded as invalid JSON %s: %v", s, b, err)
		}
		want, _ := json.Marshal(s)
		var w string
		json.Unmarshal(want, &w)
		if got != w {
			t.Fatalf("%q came back as %q, encoding/json gives %q", s, got, w)
		}
	})
}

// appendJSONStringRef is AppendString written one rune at a time, the
// reference for the word-at-a-time version.
func appendJSONStringRef(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r == '"' || r == '\\':
			dst = append(dst, '\\', byte(r))
		case r == '\n':
			dst = append(dst, `\n`...)
		case r == '\r':
			dst = append(dst, `\r`...)
		case r == '\t':
			dst = append(dst, `\t`...)
		case r < 0x20:
			dst = fmt.Appendf(dst, `\u%04x`, r)
		case r == '\u2028' || r == '\u2029':
			dst = fmt.Appendf(dst, `\u%04x`, r)
		default:
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// TestAppendJSONStringPositions puts each kind of byte that stops the
// scan at every offset of the first blocks of 16 and words of 8, alone and
// in pairs, since the scan jumps to the first such byte of a block or word.
func TestAppendJSONStringPositions(t *testing.T) {
	specials := []string{`"`, `\`, "\n", "\x00", "\x1f", "\x7f", "é", "\u2028", "\xff", "€", "\xe2\x82"}
	for _, sp := range specials {
		for _, sp2 := range append([]string{""}, specials...) {
			for pos := 0; pos < 72; pos++ {
				for gap := 0; gap < 10; gap++ {
					s := strings.Repeat("a", pos) + sp + strings.Repeat("b", gap) + sp2 + strings.Repeat("c", 20)
					got, want := AppendString(nil, s), appendJSONStringRef(nil, s)
					if string(got) != string(want) {
						t.Fatalf("%q: got %s, want %s", s, got, want)
					}
				}
			}
		}
	}
}

// TestSkipPlain16 checks the block scan against a byte loop for every byte
// value at every position of buffers of every length up to 64.
func TestSkipPlain16(t *testing.T) {
	special := func(c byte) bool { return c < 0x20 || c >= 0x80 || c == '"' || c == '\\' }
	buf := make([]byte, 64)
	for n := 0; n <= len(buf); n++ {
		for pos := -1; pos < n; pos++ {
			for v := 0; v < 256; v++ {
				for i := range buf {
					buf[i] = 'a' + byte(i%26)
				}
				if pos >= 0 {
					buf[pos] = byte(v)
				}
				b := buf[:n]
				want := n &^ 15
				for i, c := range b[:want] {
					if special(c) {
						want = i
						break
					}
				}
				if got := skipPlain16(b); got != want && !(got == 0 && skipsNothing) {
					t.Fatalf("len %d, byte %#x at %d: got %d, want %d", n, v, pos, got, want)
				}
				if pos < 0 {
					break
				}
			}
		}
	}
}

// BenchmarkAppendJSONString encodes 1 KiB of plain text and 1 KiB of JSON
// (a quote every few bytes), the bodies the capture sink sends.
func BenchmarkAppendJSONString(b *testing.B) {
	var js strings.Builder
	for i := 0; js.Len() < 1024; i++ {
		fmt.Fprintf(&js, `{"sku":"W-%05d","qty":%d,"price":%d.99,"desc":"blue widget, boxed"},`, i*7919%99999, i%9+1, i%500)
	}
	for _, c := range []struct{ name, s string }{
		{"plain", strings.Repeat("x", 1024)},
		{"json", js.String()[:1024]},
	} {
		b.Run(c.name, func(b *testing.B) {
			var dst []byte
			b.SetBytes(int64(len(c.s)))
			for b.Loop() {
				dst = AppendString(dst[:0], c.s)
			}
		})
	}
}

func TestAppendJSONText(t *testing.T) {
	for _, tc := range []struct {
		name, s string
		ok      bool
	}{
		{"empty", "", true},
		{"plain", "plain text", true},
		{"escapes and non-ASCII", "q\"\\\n\x01 é € \u2028", true},
		{"invalid byte", "abc\xffdef", false},
		{"invalid after a word", strings.Repeat("a", 17) + "\xc3", false},
		{"cut sequence at the end", "abc\xe2\x82", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := AppendText([]byte("x"), tc.s)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			want := "x"
			if ok {
				want = string(AppendString([]byte("x"), tc.s))
			}
			if string(got) != want {
				t.Fatalf("got %s, want %s", got, want)
			}
		})
	}
}
