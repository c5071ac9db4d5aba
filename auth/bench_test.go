package auth_test

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/server"
)

// discard is a ResponseWriter that keeps nothing, so the benchmark
// measures the server, not a recorder.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkKeyCheck serves a read route through the server's mux with the
// key check (Bearer, Basic, session cookie) and the same handler on a
// public route without it, alternating in blocks of 1,000 requests, and
// reports the time the check adds per request against the 1 µs target.
// Times are process CPU time (all threads, GC included), which does not
// depend on what else the machine runs; wall time on a loaded machine is
// mostly waiting for a core.
//
//	go test ./auth -run '^$' -bench KeyCheck -benchtime 200x
func BenchmarkKeyCheck(b *testing.B) {
	s := newSite(b)
	k, key := s.key(b, "acme", auth.ScopeRead)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	s.srv.Handle("GET /v1/o/{org}/environments/{env}/bench", ok)
	s.srv.HandleScope("GET /open/{org}/environments/{env}/bench", server.Public, ok)
	open := httptest.NewRequest("GET", "/open/acme/environments/prod/bench", nil)
	token := s.guard.SignInToken(k.ID)
	// A session, made the way a browser gets one.
	rec := httptest.NewRecorder()
	s.srv.ServeHTTP(rec, httptest.NewRequest("GET", "/signin?token="+token, nil))
	var cookie string
	for _, c := range rec.Result().Cookies() {
		if c.Name == auth.CookieName {
			cookie = c.Value
		}
	}
	if cookie == "" {
		b.Fatal("no session cookie")
	}
	forms := []struct{ name, header, value string }{
		{"bearer", "Authorization", "Bearer " + key},
		{"basic", "Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("me@acme.example:"+key))},
		{"cookie", "Cookie", auth.CookieName + "=" + cookie},
	}
	for _, f := range forms {
		b.Run(f.name, func(b *testing.B) {
			guarded := httptest.NewRequest("GET", "/v1/o/acme/environments/prod/bench", nil)
			guarded.Header.Set(f.header, f.value)
			w := &discard{h: http.Header{}}
			const block = 1000
			var tOpen, tGuarded time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				t0 := processCPU()
				for range block {
					s.srv.ServeHTTP(w, open)
				}
				t1 := processCPU()
				for range block {
					s.srv.ServeHTTP(w, guarded)
				}
				tOpen += t1 - t0
				tGuarded += processCPU() - t1
			}
			b.StopTimer()
			n := float64(b.N * block)
			check := float64(tGuarded-tOpen) / n
			b.ReportMetric(float64(tOpen)/n, "open-cpu-ns/req")
			b.ReportMetric(float64(tGuarded)/n, "guarded-cpu-ns/req")
			b.ReportMetric(check, "check-ns/req")
			b.ReportMetric(check/1000, "check/1µs")
		})
	}
}

// processCPU is the CPU time (user + system) of this process, all threads.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
