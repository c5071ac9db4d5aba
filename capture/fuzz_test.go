package capture

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func seedAuthorization(f *testing.F) {
	f.Helper()
	file, err := os.Open("testdata/authorization.txt")
	if err != nil {
		f.Fatal(err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		f.Add(sc.Text())
	}
}

// FuzzJWTSubject feeds arbitrary Authorization values to the default user
// identification: it must never panic, must find a user only in a Bearer
// token of three parts, and must find none in a token that does not verify.
func FuzzJWTSubject(f *testing.F) {
	seedAuthorization(f)
	open, _ := newJWTDecoder(nil, nil)
	strict, _ := newJWTDecoder([]byte("my_super_secret"), nil)
	wrongKey, _ := newJWTDecoder([]byte("another secret"), nil)
	f.Fuzz(func(t *testing.T, auth string) {
		sub := open.subject(auth)
		if sub != "" && (!strings.HasPrefix(strings.ToLower(strings.TrimSpace(auth)), "bearer ") || strings.Count(auth, ".") < 2) {
			t.Fatalf("user %q from %q, which is not a Bearer JWT", sub, auth)
		}
		if s := strict.subject(auth); s != "" && wrongKey.subject(auth) != "" {
			t.Fatalf("%q verified under two different keys", auth)
		}
	})
}

// FuzzBodyCapture reads an arbitrary body in arbitrary steps through the
// middleware: the handler must see exactly the body, and the capture must be
// its first MaxBodyBytes.
func FuzzBodyCapture(f *testing.F) {
	f.Add([]byte("hello world"), uint8(3), uint8(0))
	f.Add(bytes.Repeat([]byte{0xff, 'a'}, 700), uint8(200), uint8(5))
	f.Add([]byte{}, uint8(1), uint8(1))
	f.Fuzz(func(t *testing.T, payload []byte, step, stopAfter uint8) {
		sink := &sliceSink{}
		c, err := New(Options{Sink: sink, LogBody: true, MaxBodyBytes: 64})
		if err != nil {
			t.Fatal(err)
		}
		var seen []byte
		h := c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			buf := make([]byte, int(step)+1)
			for i := 0; stopAfter == 0 || i < int(stopAfter); i++ {
				n, err := r.Body.Read(buf)
				seen = append(seen, buf[:n]...)
				if err != nil {
					break
				}
			}
			w.Write(seen)
		}))
		req := httptest.NewRequest("POST", "/", io.NopCloser(bytes.NewReader(payload)))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if err := c.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(rec.Body.Bytes(), seen) || !bytes.Equal(seen, payload[:len(seen)]) {
			t.Fatalf("handler saw %q of body %q", seen, payload)
		}
		e := sink.events[0]
		got := []byte(e.RequestBody.Text)
		want := seen[:min(len(seen), 64)]
		if !e.RequestBody.Base64 && !bytes.HasPrefix(want, got) {
			t.Fatalf("captured %q, want a prefix of %q", got, want)
		}
		if e.RequestBody.Truncated != (len(seen) > 64) {
			t.Fatalf("truncated = %v for %d bytes read", e.RequestBody.Truncated, len(seen))
		}
	})
}
