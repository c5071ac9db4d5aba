package jsontext

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/apimeter/apimeter"
)

func TestScanHeaders(t *testing.T) {
	for _, c := range []struct {
		name string
		in   string
		want apimeter.Headers
		err  bool
	}{
		{"strings", `{"A":"1","b":"two"}`, apimeter.Headers{{Name: "A", Value: "1"}, {Name: "b", Value: "two"}}, false},
		{"arrays", `{"Set-Cookie":["a=1","b=2"],"X":[]}`, apimeter.Headers{{Name: "Set-Cookie", Value: "a=1, b=2"}, {Name: "X", Value: ""}}, false},
		{"numbers and bools", `{"N":98,"F":-1.5e3,"B":true,"Z":null}`, apimeter.Headers{{Name: "N", Value: "98"}, {Name: "F", Value: "-1.5e3"}, {Name: "B", Value: "true"}, {Name: "Z", Value: ""}}, false},
		{"escapes", `{"A\"b":"line\nbreak \u00e9"}`, apimeter.Headers{{Name: "A\"b", Value: "line\nbreak é"}}, false},
		{"whitespace", " { \"A\" : \"1\" ,\n\"B\":[ \"x\" , 2 ] } ", apimeter.Headers{{Name: "A", Value: "1"}, {Name: "B", Value: "x, 2"}}, false},
		{"empty", `{}`, apimeter.Headers{}, false},
		{"array", `["a"]`, nil, true},
		{"object value", `{"A":{"b":1}}`, nil, true},
		{"unterminated", `{"A":"1`, nil, true},
		{"missing colon", `{"A" "1"}`, nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ScanHeaders([]byte(c.in), nil)
			if (err != nil) != c.err {
				t.Fatalf("ScanHeaders(%s) error %v, want error %v", c.in, err, c.err)
			}
			if !c.err && !reflect.DeepEqual(got, c.want) && !(len(got) == 0 && len(c.want) == 0) {
				t.Errorf("ScanHeaders(%s) = %v, want %v", c.in, got, c.want)
			}
		})
	}
}

// FuzzScanHeaders checks the hand-written header scanner against
// encoding/json: whatever encoding/json reads as an object of strings, the
// scanner reads the same, and it never panics.
func FuzzScanHeaders(f *testing.F) {
	for _, s := range []string{`{"A":"1"}`, `{"a":["x","y"]}`, `{"n":1}`, `{"e":"\u00e9\n"}`, `{}`, `[`, `{"a":`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ScanHeaders(b, nil)
		var ref map[string]string
		if json.Unmarshal(b, &ref) == nil && ref != nil {
			if err != nil {
				t.Fatalf("ScanHeaders(%q) failed (%v) where encoding/json read %v", b, err, ref)
			}
			for _, h := range got {
				if ref[h.Name] != h.Value && strings.Count(string(b), `"`+h.Name+`"`) == 1 && utf8.Valid(b) {
					t.Fatalf("ScanHeaders(%q): %q = %q, encoding/json says %q", b, h.Name, h.Value, ref[h.Name])
				}
			}
		}
	})
}

// FuzzValidJSON: for any valid JSON, ValidJSON gives valid JSON of valid
// UTF-8 without a lone surrogate escape, that encoding/json decodes to
// the same value, and is idempotent; for anything, it does not panic.
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{`{"a":"b"}`, `"\ud800"`, `"\ud83d\ude00"`, `["\udc00\ud800","\\ud800"]`, "\"\xff\xfe\"", "{\"\xc3\":\"\\uD800x\"}", `"\u12"`, "\"\xed\xa0\x80\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out := ValidJSON(b)
		if !json.Valid(b) {
			return
		}
		if !json.Valid(out) || !utf8.Valid(out) {
			t.Fatalf("ValidJSON(%q) = %q: not valid UTF-8 JSON", b, out)
		}
		if s := loneSurrogateEscape(out); s != "" {
			t.Fatalf("ValidJSON(%q) = %q keeps the lone surrogate %s", b, out, s)
		}
		var vb, vo any
		json.Unmarshal(b, &vb)
		json.Unmarshal(out, &vo)
		if !reflect.DeepEqual(vb, vo) {
			t.Fatalf("ValidJSON(%q) = %q decodes to %#v, the input to %#v", b, out, vo, vb)
		}
		if again := ValidJSON(out); !bytes.Equal(again, out) {
			t.Fatalf("ValidJSON not idempotent: %q -> %q -> %q", b, out, again)
		}
	})
}

// loneSurrogateEscape returns the first \uD800-\uDFFF escape of b that is
// not half of a pair, or "".
func loneSurrogateEscape(b []byte) string {
	for i := 0; i+6 <= len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if b[i+1] != 'u' {
			i++
			continue
		}
		r, _ := hex4(b, i+2)
		if r >= 0xD800 && r < 0xDC00 && i+12 <= len(b) && b[i+6] == '\\' && b[i+7] == 'u' {
			if r2, ok := hex4(b, i+8); ok && r2 >= 0xDC00 && r2 <= 0xDFFF {
				i += 11
				continue
			}
		}
		if r >= 0xD800 && r <= 0xDFFF {
			return string(b[i : i+6])
		}
		i += 5
	}
	return ""
}
