package billing_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// stripeMockBin finds stripe-mock (github.com/stripe/stripe-mock, installed
// by .ci/run): $APIMETER_STRIPE_MOCK, the PATH, then $(go env GOPATH)/bin.
func stripeMockBin(t *testing.T) string {
	if p := os.Getenv("APIMETER_STRIPE_MOCK"); p != "" {
		return p
	}
	if p, err := exec.LookPath("stripe-mock"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "stripe-mock")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := "stripe-mock not found: GOBIN=$(go env GOPATH)/bin go install github.com/stripe/stripe-mock@v0.203.0 (.ci/run does)"
	if os.Getenv("APIMETER_REQUIRE_STRIPE_MOCK") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// startStripeMock starts stripe-mock on a free loopback port and returns
// its base URL; it is stopped when the test ends.
func startStripeMock(t *testing.T) string {
	bin := stripeMockBin(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "-http-addr", addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "Listening for HTTP") {
			go io.Copy(io.Discard, out)
			return "http://" + addr
		}
	}
	t.Fatalf("stripe-mock stopped before listening on %s", addr)
	return ""
}

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
	srv        *httptest.Server
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
		rec.mu.Unlock()
		if before {
			http.Error(w, `{"error":{"message":"proxy: connection reset"}}`, http.StatusBadGateway)
			return
		}
		cw := &captureWriter{ResponseWriter: w, status: 200, drop: after}
		rp.ServeHTTP(cw, r)
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
	status      int
	drop        bool
	wroteHeader bool
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

var _ = context.Background
