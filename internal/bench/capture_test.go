package bench

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestBenchCapture runs one short round of the capture load run with each
// load generator against a full collector, and checks that every captured
// call is accounted for: stored by the collector, or reported dropped by
// the middleware. How many calls a round makes, and so whether a queue
// overflows, depends on the machine's load; the accounting does not. The
// large queue keeps drops out of an ordinary run; the tiny one makes them
// happen, to check they are counted rather than lost. Throughput is the
// benchmark's business (docs/performance.md), not this test's.
func TestBenchCapture(t *testing.T) {
	for _, tc := range []struct {
		name, load string
		queue      int
	}{
		{"go", "go", 1 << 20},
		{"wrk", "wrk", 1 << 20},
		{"go-overflowing-queue", "go", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.load == "wrk" {
				if _, err := exec.LookPath("wrk"); err != nil {
					t.Skip("wrk is not installed (apt-get install wrk; .ci/run installs it)")
				}
			}
			var out bytes.Buffer
			c := CaptureCmd{Rounds: 1, Duration: 300 * time.Millisecond, Clients: 2, BodyBytes: 256, SampleRate: 1,
				Sink: "collector", Load: tc.load, BareAddr: "127.0.0.1:0", WrappedAddr: "127.0.0.1:0", QueueSize: tc.queue, out: &out}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			if err := c.Run(context.Background()); err != nil {
				t.Fatalf("bench capture: %v\n%s", err, out.String())
			}
			var enq, sent, dropped, failed, stored int64
			if err := scanLine(out.String(), "capture: enqueued %d, sent %d, dropped (queue full) %d, failed %d", &enq, &sent, &dropped, &failed); err != nil {
				t.Fatal(err)
			}
			if err := scanLine(out.String(), "collector: stored %d events", &stored); err != nil {
				t.Fatal(err)
			}
			// enqueued counts what the queue took; dropped what it refused.
			if enq == 0 || sent != enq || failed != 0 || stored != sent {
				t.Fatalf("enqueued %d, sent %d, failed %d, stored by the collector %d (dropped %d): want sent = enqueued = stored, none failed:\n%s",
					enq, sent, failed, stored, dropped, out.String())
			}
			if !strings.Contains(out.String(), "wrapped/bare") {
				t.Fatalf("no ratio in:\n%s", out.String())
			}
			t.Logf("%d calls captured: %d stored, %d dropped at a queue of %d", enq+dropped, stored, dropped, tc.queue)
		})
	}
}

// scanLine reads the line of out that starts as format does.
func scanLine(out, format string, args ...any) error {
	prefix := format[:strings.IndexByte(format, '%')]
	i := strings.Index(out, prefix)
	if i < 0 {
		return fmt.Errorf("no %q line in:\n%s", prefix, out)
	}
	if _, err := fmt.Sscanf(out[i:], format, args...); err != nil {
		return fmt.Errorf("reading %q: %v", out[i:], err)
	}
	return nil
}
