package bench

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestBenchGateway runs one short round of the gateway load run and checks
// that it measured all three proxies, that the gateway sent every call it
// captured, and that the one with its collector down sent none.
func TestBenchGateway(t *testing.T) {
	var out bytes.Buffer
	c := GatewayCmd{Rounds: 1, Duration: 300 * time.Millisecond, Clients: 2, BodyBytes: 256, Sink: "http", Load: "go", out: &out}
	if err := c.Run(context.Background()); err != nil {
		t.Fatalf("bench gateway: %v\n%s", err, out.String())
	}
	for _, want := range []string{"median bare", "gateway/bare", "down/bare"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("no %q in:\n%s", want, out.String())
		}
	}
	for _, name := range []string{"gateway", "down"} {
		i := strings.Index(out.String(), "\n"+name+": enqueued")
		if i < 0 {
			t.Fatalf("no %s summary in:\n%s", name, out.String())
		}
		var enq, sent, dropped, failed, queued int64
		if _, err := fmt.Sscanf(out.String()[i+1:], name+": enqueued %d, sent %d, dropped (queue full) %d, failed %d, queued %d", &enq, &sent, &dropped, &failed, &queued); err != nil {
			t.Fatalf("reading %s summary: %v\n%s", name, err, out.String())
		}
		if enq == 0 || name == "gateway" && (sent != enq || dropped+failed != 0) || name == "down" && sent != 0 {
			t.Fatalf("%s: enqueued %d, sent %d, dropped %d, failed %d:\n%s", name, enq, sent, dropped, failed, out.String())
		}
	}
}
