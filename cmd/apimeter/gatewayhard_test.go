package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/capture"
	"github.com/apimeter/apimeter/gateway"
	"github.com/apimeter/apimeter/instance"
	"github.com/apimeter/apimeter/moesif"
)

// collectorProc is `apimeter serve` in a child process at a fixed address,
// so that it can be stopped and started again where the gateway sends.
type collectorProc struct {
	cmd  *exec.Cmd
	addr string
	data string
}

func startCollectorAt(t *testing.T, addr, data string, flags ...string) *collectorProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--listen", addr, "--data", data, "--log-level", "warn"}, flags...)...)
	cmd.Env = append(os.Environ(), "APIMETER_TEST_AS_MAIN=1")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &collectorProc{cmd: cmd, addr: addr, data: data}
	t.Cleanup(func() { p.kill() })
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			return p
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("collector did not start within 60 s")
	return nil
}

func (p *collectorProc) kill() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
	}
}

// stop stops the collector cleanly and returns how often each event id
// was stored.
func (p *collectorProc) stop(t *testing.T) map[string]int {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
	db := openDB(t, filepath.Join(p.data, instance.DBFile))
	rows, err := db.Query(`SELECT id, count(*) FROM events GROUP BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		rows.Scan(&id, &n)
		counts[id] = n
	}
	return counts
}

// gatewayTo starts a gateway in front of a plain upstream, sending to the
// collector at addr with retries a test can wait for.
func gatewayTo(t *testing.T, addr, appID string) (*gateway.Gateway, string) {
	t.Helper()
	up := http.NewServeMux()
	up.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"ok":true}`) })
	// An upstream that resets its connection after the headers and 1,000
	// bytes of a 100,000-byte answer.
	up.HandleFunc("/reset", func(w http.ResponseWriter, r *http.Request) {
		conn, bw, _ := http.NewResponseController(w).Hijack()
		fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n%s", strings.Repeat("r", 1000))
		bw.Flush()
		conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	})
	// A 16 MB download.
	up.HandleFunc("/download", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(16<<20))
		buf := make([]byte, 64<<10)
		for n := 0; n < 16<<20; n += len(buf) {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	})
	uln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	usrv := &http.Server{Handler: up}
	go usrv.Serve(uln)
	t.Cleanup(func() { usrv.Close() })
	upURL := "http://" + uln.Addr().String()
	sinks := func(gateway.Upstream) (capture.Sink, error) {
		return capture.NewHTTPSink(capture.HTTPSinkConfig{URL: "http://" + addr, ApplicationID: appID,
			Backoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	}
	g, err := gateway.New(gateway.Config{Upstreams: []gateway.Upstream{{Name: "api", URL: upURL}}}, gateway.Options{Sink: sinks})
	if err != nil {
		t.Fatal(err)
	}
	hs := g.Server()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close(); g.Close(context.Background()) })
	return g, "http://" + ln.Addr().String()
}

// oddCall is one call the collector's caps would refuse whole.
type oddCall struct {
	name  string
	query string
	h     http.Header
}

func oddCalls() []oddCall {
	many := http.Header{}
	for i := range 1001 {
		many.Set(fmt.Sprintf("X-H-%d", i), "v")
	}
	return []oddCall{
		{"1,001 headers", "", many},
		{"a 20 KB header", "", http.Header{"X-Big": {strings.Repeat("b", 20<<10)}}},
		{"a 17 KB URI", "?q=" + strings.Repeat("u", 17<<10), nil},
	}
}

// sendCalls sends n calls through the gateway, the odd one among them at
// index odd (-1: none), 8 at a time, and returns the transaction ids the
// clients were given.
func sendCalls(t *testing.T, gw string, n, odd int, oc oddCall) []string {
	t.Helper()
	ids := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				u := fmt.Sprintf("%s/items/%d", gw, i)
				req, _ := http.NewRequest("GET", u, nil)
				if i == odd {
					req.URL.RawQuery = strings.TrimPrefix(oc.query, "?")
					for k, v := range oc.h {
						req.Header[k] = v
					}
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("call %d: status %d", i, resp.StatusCode)
					return
				}
				ids[i] = resp.Header.Get(moesif.TransactionIDHeader)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return ids
}

// TestOddCallsDoNotEraseTheirBatch: through a real upstream, the gateway
// and a real collector process, a call with 1,001 headers, a 20 KB header
// or a 17 KB URI among 499 normal calls is answered 200 and all 500 calls
// are stored, the odd one cut to the collector's caps. Before, the
// collector refused the batch and the gateway dropped it.
func TestOddCallsDoNotEraseTheirBatch(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	app, err := apps.Create(data, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	col := startCollectorAt(t, freeAddr(t), data)
	g, gw := gatewayTo(t, col.addr, app.ID)
	var acked []string
	for r, oc := range oddCalls() {
		acked = append(acked, sendCalls(t, gw, 500, 100+r*150, oc)...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := g.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st := g.Stats().Capture
	counts := col.stop(t)
	missing := 0
	for _, id := range acked {
		if counts[id] != 1 {
			missing++
		}
	}
	if missing > 0 || len(acked) != 1500 || st.Failed != 0 || st.Dropped != 0 {
		t.Fatalf("%d of %d calls not stored once (gateway %+v); want all 3 x 500 stored", missing, len(acked), st)
	}
}

// TestRefusedEventLeavesTheRestStored: a collector process with a
// stricter URI cap than the gateway's refuses one event of a batch of 500;
// the gateway sends the other 499 again and counts the one refused.
func TestRefusedEventLeavesTheRestStored(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	app, err := apps.Create(data, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	col := startCollectorAt(t, freeAddr(t), data, "--max-uri-bytes", "1024")
	g, gw := gatewayTo(t, col.addr, app.ID)
	ids := sendCalls(t, gw, 500, 250, oddCall{query: "?q=" + strings.Repeat("u", 2048)})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g.Close(ctx)
	st := g.Stats().Capture
	counts := col.stop(t)
	stored := 0
	for _, id := range ids {
		if counts[id] == 1 {
			stored++
		}
	}
	if stored != 499 || counts[ids[250]] != 0 || st.Refused != 1 || st.Sent != 499 {
		t.Fatalf("stored %d, gateway %+v; want 499 stored and sent, 1 refused", stored, st)
	}
}

// TestRestartingCollectorLosesNothing: the collector process dies and its
// port answers nothing but resets for as long as the gateway's sender
// keeps trying (well past its old 1.4 s of retries); calls go on, queue,
// and once a collector is back at the address every one of them is
// stored once, none dropped or failed.
func TestRestartingCollectorLosesNothing(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	app, err := apps.Create(data, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	col := startCollectorAt(t, addr, data)
	g, gw := gatewayTo(t, addr, app.ID)
	acked := sendCalls(t, gw, 50, -1, oddCall{})
	waitForCond(t, "the first calls sent", func() bool { return g.Stats().Capture.Sent == 50 })
	col.kill()

	// The port while the collector is down: connections accepted and
	// reset, counted, so the test knows how long the sender has tried.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("hold the collector's port: %v", err)
	}
	var attempts atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			attempts.Add(1)
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	acked = append(acked, sendCalls(t, gw, 300, -1, oddCall{})...)
	// The old sender gave up after 4 attempts; this one must still be
	// trying after 12.
	waitForCond(t, "12 attempts or a failed batch", func() bool {
		return attempts.Load() >= 12 || g.Stats().Capture.Failed > 0
	})
	ln.Close()
	col = startCollectorAt(t, addr, data)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := g.Close(ctx); err != nil {
		t.Fatalf("close gateway: %v", err)
	}
	st := g.Stats().Capture
	counts := col.stop(t)
	lost, twice := 0, 0
	for _, id := range acked {
		switch counts[id] {
		case 0:
			lost++
		case 1:
		default:
			twice++
		}
	}
	if lost > 0 || twice > 0 || st.Failed != 0 || st.Dropped != 0 {
		t.Fatalf("of %d calls, %d lost and %d stored twice across the collector's restart (gateway %+v, %d attempts while down)", len(acked), lost, twice, st, attempts.Load())
	}
}

func waitForCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCutCallsReachTheCollector: through a real upstream, the gateway and a
// real collector process, a call the upstream resets after its headers and
// a download the client drops after 2 MB are stored with the status sent,
// the bytes the client got and how they ended. Before, both panicked
// through the capture unrecorded.
func TestCutCallsReachTheCollector(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	app, err := apps.Create(data, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	col := startCollectorAt(t, freeAddr(t), data)
	g, gw := gatewayTo(t, col.addr, app.ID)
	if resp, err := http.Get(gw + "/reset"); err == nil {
		if _, err := io.ReadAll(resp.Body); err == nil {
			t.Fatal("reset upstream: the client read a whole answer")
		}
		resp.Body.Close()
	}
	waitForCond(t, "the reset call recorded", func() bool { return g.Stats().Capture.Enqueued == 1 })
	conn, err := net.Dial("tcp", strings.TrimPrefix(gw, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /download HTTP/1.1\r\nHost: api\r\n\r\n")
	if _, err := io.CopyN(io.Discard, conn, 2<<20); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	waitForCond(t, "the dropped download recorded", func() bool { return g.Stats().Capture.Enqueued == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := g.Close(ctx); err != nil {
		t.Fatal(err)
	}
	col.stop(t)
	db := openDB(t, filepath.Join(data, instance.DBFile))
	rows, err := db.Query(`SELECT path, status, detail FROM events`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]string{}
	for rows.Next() {
		var path, detail string
		var status int
		rows.Scan(&path, &status, &detail)
		got[path] = fmt.Sprintf("%d %s", status, detail)
	}
	if s := got["/reset"]; !strings.HasPrefix(s, "200 ") || !strings.Contains(s, `"outcome":"reset"`) || !strings.Contains(s, `"bytes_sent":1000`) {
		t.Errorf("reset call stored as %.300q; want status 200, outcome reset, 1000 bytes sent", s)
	}
	if s := got["/download"]; !strings.HasPrefix(s, "200 ") || !strings.Contains(s, `"outcome":"aborted"`) {
		t.Errorf("dropped download stored as %.300q; want status 200, outcome aborted", s)
	}
}
