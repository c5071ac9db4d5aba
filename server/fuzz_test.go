package server_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/apimeter/apimeter/server"
)

// FuzzCollectorBatch posts arbitrary bodies to /v1/events/batch: the
// answer is always a 200 or a 4xx with a JSON error, never a 5xx or a
// panic.
func FuzzCollectorBatch(f *testing.F) {
	if b, err := os.ReadFile("../testdata/moesif/node-batch.json"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("[" + goodEvent + "]"))
	f.Add([]byte(`[{"request":{"time":1}}]`))
	e := newEnv(f, server.Config{})
	h := e.http.Config.Handler
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/events/batch", bytes.NewReader(body))
		req.Header.Set(server.AppIDHeader, e.appID)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 || (rec.Code != 200 && !bytes.Contains(rec.Body.Bytes(), []byte(`"error"`))) {
			t.Fatalf("body %q: answered %d %s", body, rec.Code, rec.Body.Bytes())
		}
	})
}
