package httpmsg

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzRoundTrip checks that whatever Decode accepts, Encoder writes back in
// a form Decode reads as the same message (body cut at the limit), and that
// no secret header survives either way. Seeded with testdata/apim; its
// corpus is in testdata/fuzz/FuzzRoundTrip.
func FuzzRoundTrip(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "apim", "*.txt"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("request:a\nGET /x HTTP/1.1\r\nauthorization: Bearer t\r\n X-Fold: y\r\n\r\nbody"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		for _, h := range m.Header {
			if secret(h.Name) {
				t.Fatalf("Decode kept secret header %q", h.Name)
			}
		}
		enc := Encoder{BodyLimit: 64}.Append(nil, &m)
		m2, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(m)): %v\nmessage %q", err, enc)
		}
		m.Body = CutBody(m.Body, 64)
		if len(m.Body) == 0 {
			m.Body = nil
		}
		if len(m.Header) == 0 {
			m.Header = nil
		}
		if len(m2.Header) == 0 {
			m2.Header = nil
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed the message\nfirst  %+v\nsecond %+v\nencoded %q", m, m2, enc)
		}
		head, _, _ := bytes.Cut(enc, []byte("\r\n\r\n"))
		if bytes.Contains(bytes.ToLower(head), []byte("\nauthorization:")) {
			t.Fatalf("encoded message holds an Authorization header: %q", head)
		}
	})
}
