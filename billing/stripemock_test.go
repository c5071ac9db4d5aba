package billing_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// recorded is a meter event request stripe-mock accepted.
type recorded struct {
	form   url.Values
	status int
}

// recorder is a reverse proxy in front of stripe-mock that records the
// requests stripe-mock answered and can fail: failBefore > 0 makes the
// failBefore-th request fail without reaching stripe-mock (a push killed
// before the send); failAfter > 0 makes the failAfter-th request reach
// stripe-mock and then fail towards the client (a crash after Stripe's
// 2xx, before the ledger).
type recorder struct {
	mu         sync.Mutex
	reqs       []recorded
	n          int
	failBefore int
	failAfter  int
	// hook, when set, is called with each request's number before it is
	// forwarded.
	hook func(n int)
	srv  *httptest.Server
}

func newRecorder(t *testing.T, base string) *recorder {
	u, _ := url.Parse(base)
	rp := httputil.NewSingleHostReverseProxy(u)
	rec := &recorder{}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		form := r.PostForm
		r.Body = io.NopCloser(strings.NewReader(form.Encode()))
		r.ContentLength = int64(len(form.Encode()))
		rec.mu.Lock()
		rec.n++
		n := rec.n
		before, after := rec.failBefore == n, rec.failAfter == n
		hook := rec.hook
		rec.mu.Unlock()
		if hook != nil {
			hook(n)
		}
		if before {
			http.Error(w, `{"error":{"message":"proxy: connection reset"}}`, http.StatusBadGateway)
			return
		}
		cw := &captureWriter{ResponseWriter: w, status: 200, drop: after}
		// A request that left the client reaches Stripe even if the
		// client then gives up on it.
		rp.ServeHTTP(cw, r.WithContext(context.WithoutCancel(r.Context())))
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, recorded{form, cw.status})
		rec.mu.Unlock()
		if after {
			http.Error(w, `{"error":{"message":"proxy: lost the answer"}}`, http.StatusBadGateway)
		}
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

type captureWriter struct {
	http.ResponseWriter
	status int
	drop   bool
}

func (c *captureWriter) WriteHeader(s int) {
	c.status = s
	if !c.drop {
		c.ResponseWriter.WriteHeader(s)
	}
}

func (c *captureWriter) Write(b []byte) (int, error) {
	if c.drop {
		return len(b), nil
	}
	return c.ResponseWriter.Write(b)
}

func (rec *recorder) take() []recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	r := rec.reqs
	rec.reqs = nil
	return r
}
