package main

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
// call was stored.
func TestBenchCapture(t *testing.T) {
	for _, load := range []string{"go", "wrk"} {
		t.Run(load, func(t *testing.T) {
			if load == "wrk" {
				if _, err := exec.LookPath("wrk"); err != nil {
					t.Skip("wrk is not installed (apt-get install wrk; .ci/run installs it)")
				}
			}
			var out bytes.Buffer
			c := benchCaptureCmd{Rounds: 1, Duration: 300 * time.Millisecond, Clients: 2, BodyBytes: 256, SampleRate: 1,
				Sink: "collector", Load: load, BareAddr: "127.0.0.1:0", WrappedAddr: "127.0.0.1:0", out: &out}
			if err := c.Run(context.Background()); err != nil {
				t.Fatalf("bench capture: %v\n%s", err, out.String())
			}
			var enq, sent, dropped, failed int64
			i := strings.Index(out.String(), "capture: enqueued")
			if i < 0 {
				t.Fatalf("no capture summary in:\n%s", out.String())
			}
			if _, err := fmt.Sscanf(out.String()[i:], "capture: enqueued %d, sent %d, dropped (queue full) %d, failed %d", &enq, &sent, &dropped, &failed); err != nil {
				t.Fatalf("reading %q: %v", out.String()[i:], err)
			}
			if enq == 0 || sent != enq || dropped != 0 || failed != 0 {
				t.Fatalf("enqueued %d, sent %d, dropped %d, failed %d:\n%s", enq, sent, dropped, failed, out.String())
			}
			if !strings.Contains(out.String(), "wrapped/bare") {
				t.Fatalf("no ratio in:\n%s", out.String())
			}
		})
	}
}
