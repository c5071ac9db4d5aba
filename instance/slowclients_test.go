package instance

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/apimeter/apimeter/apps"
)

// TestSlowClientsAreCut starts the real server with short timeouts, opens
// many connections that each send a batch body one byte at a time, and
// one keep-alive connection that goes idle after a request: the server
// must close every one of them. It asserts what happens (the server hangs
// up), not how fast; the deadlines are only there so that a server that
// never hangs up fails the test instead of hanging it.
func TestSlowClientsAreCut(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, err := apps.Create(dir, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	f := Config{Listen: "127.0.0.1:0", Data: dir, BodyCap: 1024, MaxBodyBytes: 1 << 20, MaxBatchEvents: 100,
		IdentityConfig: IdentityConfig{ClaimsConfig: ClaimsConfig{JWTClaim: "sub"}, BillingDay: 1, BillingTZ: "UTC"},
		HTTPConfig:     HTTPConfig{ReadHeaderTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: time.Second, MaxConnections: 200}}
	in, err := Start(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	addr := in.Addr.String()
	const slow = 50
	giveUp := time.Now().Add(40 * time.Second)

	// hungUp reads from c until the server closes it, and reports whether
	// it did before giveUp.
	hungUp := func(c net.Conn) bool {
		c.SetReadDeadline(giveUp)
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}

	var wg sync.WaitGroup
	cut := make(chan bool, slow)
	for i := 0; i < slow; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /v1/events/batch HTTP/1.1\r\nHost: %s\r\nX-Moesif-Application-Id: %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n[", addr, a.ID)
		wg.Add(2)
		go func() { // one byte every 200 ms until the server hangs up
			defer wg.Done()
			for time.Now().Before(giveUp) {
				time.Sleep(200 * time.Millisecond)
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			cut <- hungUp(c)
		}()
	}

	// A keep-alive connection: one full request, then idle.
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	fmt.Fprintf(idle, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("keep-alive request: %v, %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	idle.SetReadDeadline(giveUp)
	_, err = br.ReadByte()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("an idle keep-alive connection was never closed")
	}

	wg.Wait()
	close(cut)
	held := 0
	for ok := range cut {
		if !ok {
			held++
		}
	}
	if held > 0 {
		t.Errorf("%d of %d slow-body connections were held open past the read timeout", held, slow)
	}
	// The server still serves.
	r, err := http.Get(in.URL + "/healthz")
	if err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("after the slow clients: %v, %v", r, err)
	}
	r.Body.Close()
}
