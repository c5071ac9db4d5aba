package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/capture"
	"github.com/apimeter/apimeter/gateway"
	"github.com/apimeter/apimeter/internal/redistest"
	"github.com/apimeter/apimeter/scrub"
)

// waitFor polls cond until it holds, failing the test after a minute:
// a wait for an event, not a measure of time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockedBuffer is a log destination safe for the gateway's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Split(strings.TrimSpace(l.b.String()), "\n")
}

// TestHungRedisOpensTheQuotaCircuit: with the quota counters' Redis
// stopped (SIGSTOP: connections open, no answer), calls are still
// answered; after a few checks that time out the circuit opens and calls
// are forwarded without waiting on Redis at all, with one log line for
// the change, not one per call. When Redis answers again the circuit
// closes and quotas count again.
func TestHungRedisOpensTheQuotaCircuit(t *testing.T) {
	rs := redistest.StartServer(t)
	up := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	var logs lockedBuffer
	cfg := gateway.Config{
		Upstreams: []gateway.Upstream{{Name: "api", URL: up}},
		Quotas:    []gateway.Quota{{Name: "per-key", By: gateway.ByAPIKey, Per: gateway.PerMinute, Limit: 1000}},
	}
	g, gw := startGateway(t, cfg, gateway.Options{Sink: sinkTo(&keepSink{}), Counter: gateway.NewRedisCounter(rs.Client, "hung:"),
		QuotaProbeAfter: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	key := map[string]string{"X-Api-Key": "k1"}
	call := func() {
		t.Helper()
		if resp, _ := do(t, "GET", gw+"/x", "", key); resp.StatusCode != 200 {
			t.Fatalf("call: %d, want the upstream's 200", resp.StatusCode)
		}
	}
	for range 3 {
		call()
	}
	if st := g.Stats(); st.QuotaErrors != 0 || st.QuotaBreakerOpen {
		t.Fatalf("with Redis up: %+v", st)
	}
	if err := rs.Pause(); err != nil {
		t.Fatal(err)
	}
	const hung = 20
	for range hung {
		call()
	}
	st := g.Stats()
	// Five checks waited for their deadline; the others were not tried.
	if !st.QuotaBreakerOpen || st.QuotaErrors < 5 || st.QuotaSkipped < hung-st.QuotaErrors-2 || st.QuotaErrors+st.QuotaSkipped != hung {
		t.Fatalf("with Redis stopped: %+v; want the circuit open after 5 failed checks and the other calls not waiting on Redis", st)
	}
	if err := rs.Resume(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the circuit to close", func() bool {
		call()
		return !g.Stats().QuotaBreakerOpen
	})
	before := g.Stats()
	call()
	if after := g.Stats(); after.QuotaErrors != before.QuotaErrors || after.QuotaSkipped != before.QuotaSkipped {
		t.Fatalf("after Redis came back: %+v then %+v, want the call checked", before, after)
	}
	n, err := rs.Client.Get(context.Background(), "hung:quota:per-key:"+scrub.New(nil, nil, 0).Fingerprint("k1")+":"+fmt.Sprint(time.Now().Truncate(time.Minute).Unix())).Int()
	if err != nil || n < 1 {
		t.Fatalf("quota counter after Redis came back: %d, %v; want the calls counted", n, err)
	}
	var opened, warns int
	for _, l := range logs.lines() {
		if strings.Contains(l, "circuit open") {
			opened++
		}
		if strings.Contains(l, "level=WARN") {
			warns++
		}
	}
	if opened < 1 || warns != opened {
		t.Fatalf("log: %d 'circuit open' lines and %d warnings; want one warning per change of state, none per call:\n%s", opened, warns, strings.Join(logs.lines(), "\n"))
	}
}

// TestClientCannotChooseItsAddress: the gateway does not pass a client's
// X-Real-IP or True-Client-IP upstream; X-Real-IP is the address the
// gateway found. Behind a trusted proxy that address is the one the proxy
// appended to X-Forwarded-For (the last), and only if it is an IP; the
// leftmost, which the client wrote, is never taken.
func TestClientCannotChooseItsAddress(t *testing.T) {
	type seen struct{ realIP, trueIP string }
	got := make(chan seen, 1)
	up := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Header.Get("X-Real-IP"), r.Header.Get("True-Client-IP")}
	}))
	cases := []struct {
		name   string
		trust  bool
		xff    string
		wantIP string
	}{
		{"untrusted: the peer", false, "9.9.9.9", "127.0.0.1"},
		{"trusted: the address the proxy appended", true, "6.6.6.6, 203.0.113.7", "203.0.113.7"},
		{"trusted, not an IP: the peer", true, "203.0.113.7, not-an-ip<script>", "127.0.0.1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sink := &keepSink{}
			g, gw := startGateway(t, gateway.Config{TrustForwarded: tc.trust, Upstreams: []gateway.Upstream{{Name: "api", URL: up}}},
				gateway.Options{Sink: sinkTo(sink)})
			resp, _ := do(t, "GET", gw+"/who", "", map[string]string{"X-Real-IP": "6.6.6.6", "True-Client-IP": "6.6.6.6", "X-Forwarded-For": tc.xff})
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			s := <-got
			if s.realIP != tc.wantIP || s.trueIP != "" {
				t.Errorf("upstream got X-Real-IP %q, True-Client-IP %q; want %q and none", s.realIP, s.trueIP, tc.wantIP)
			}
			flush(t, g)
			if evs := sink.all(); len(evs) != 1 || evs[0].ClientIP != tc.wantIP {
				t.Errorf("recorded %+v, want client IP %s", evs, tc.wantIP)
			}
		})
	}
}

// TestConnectIsRefused: CONNECT would open a tunnel through the gateway
// that no metering sees; it is answered 405 and never reaches upstream.
func TestConnectIsRefused(t *testing.T) {
	reached := make(chan string, 1)
	up := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached <- r.Method }))
	_, gw := startGateway(t, gateway.Config{Upstreams: []gateway.Upstream{{Name: "api", URL: up}}}, gateway.Options{Sink: sinkTo(&keepSink{})})
	conn, err := net.Dial("tcp", strings.TrimPrefix(gw, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(string(body), "method_not_allowed") {
		t.Fatalf("CONNECT: %d %s, want 405 method_not_allowed", resp.StatusCode, body)
	}
	select {
	case m := <-reached:
		t.Fatalf("the upstream got a %s", m)
	default:
	}
}

// TestCutCallsAreRecordedThroughTheGateway: an upstream that resets its
// connection after the headers, a client that drops a download after
// 2 MB, and a client that leaves before the upstream answers are each
// recorded: the first two with the status sent, the bytes that reached
// the client and their outcome (reset, aborted), the last as 499.
func TestCutCallsAreRecordedThroughTheGateway(t *testing.T) {
	const big = 16 << 20
	release := make(chan struct{})
	defer close(release)
	slowStarted := make(chan struct{}, 1)
	up := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/reset":
			conn, bw, _ := http.NewResponseController(w).Hijack()
			fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n%s", strings.Repeat("r", 1000))
			bw.Flush()
			conn.(*net.TCPConn).SetLinger(0) // an RST, not a FIN
			conn.Close()
		case "/download":
			w.Header().Set("Content-Length", fmt.Sprint(big))
			buf := make([]byte, 64<<10)
			for n := 0; n < big; n += len(buf) {
				if _, err := w.Write(buf); err != nil {
					return
				}
			}
		case "/slow":
			slowStarted <- struct{}{}
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
	}))
	sink := &keepSink{}
	g, gw := startGateway(t, gateway.Config{Upstreams: []gateway.Upstream{{Name: "api", URL: up}}}, gateway.Options{Sink: sinkTo(sink)})
	addr := strings.TrimPrefix(gw, "http://")

	resp, err := http.Get(gw + "/reset")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("reset upstream: the client read a whole answer")
	}
	waitFor(t, "the reset call's event", func() bool { return g.Stats().Capture.Enqueued == 1 })

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /download HTTP/1.1\r\nHost: api\r\n\r\n")
	if _, err := io.CopyN(io.Discard, conn, 2<<20); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	waitFor(t, "the aborted download's event", func() bool { return g.Stats().Capture.Enqueued == 2 })

	conn, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /slow HTTP/1.1\r\nHost: api\r\n\r\n")
	// The gateway has the call once the upstream does; then the client
	// leaves.
	<-slowStarted
	conn.Close()
	waitFor(t, "the abandoned call's event", func() bool { return g.Stats().Capture.Enqueued == 3 })
	flush(t, g)

	byPath := map[string]apimeter.Event{}
	for _, e := range sink.all() {
		byPath[e.Path] = e
	}
	type mark struct {
		Outcome   string `json:"outcome"`
		BytesSent *int64 `json:"bytes_sent"`
	}
	for _, w := range []struct {
		path, outcome string
		status        int
		sent          func(int64) bool
	}{
		{"/reset", capture.OutcomeReset, 200, func(n int64) bool { return n == 1000 }},
		{"/download", capture.OutcomeAborted, 200, func(n int64) bool { return n >= 2<<20 && n < big }},
		{"/slow", "", 499, nil},
	} {
		e, ok := byPath[w.path]
		if !ok {
			t.Errorf("%s: not recorded", w.path)
			continue
		}
		var md struct {
			M mark `json:"apimeter"`
		}
		if len(e.Metadata) > 0 {
			json.Unmarshal(e.Metadata, &md)
		}
		if e.Status != w.status || md.M.Outcome != w.outcome || w.sent != nil && (md.M.BytesSent == nil || !w.sent(*md.M.BytesSent)) {
			t.Errorf("%s: recorded status %d, metadata %s; want %d, outcome %q and the bytes sent", w.path, e.Status, e.Metadata, w.status, w.outcome)
		}
	}
}
