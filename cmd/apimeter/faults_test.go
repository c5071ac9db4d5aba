package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/internal/loadrun"
)

// TestFaultRun is a short `apimeter bench faults`: retrying senders while
// the server is SIGKILLed and restarted, with a poison sender and slow
// clients throughout. Every acknowledged event must be stored once, no
// good batch may be refused, and no poison batch may get a 5xx (a 5xx
// makes senders retry it, so the poison would come back).
func TestFaultRun(t *testing.T) {
	if testing.Short() {
		t.Skip("a 15 s fault run; skipped with -short")
	}
	var log strings.Builder
	rep, err := loadrun.Faults(context.Background(), loadrun.FaultConfig{
		Bin: os.Args[0], Env: []string{"APIMETER_TEST_AS_MAIN=1"},
		Duration: 15 * time.Second, Senders: 3, Batch: 50, Kills: 1,
		SlowClients: 10, Poison: true, Out: &log,
	})
	if err != nil {
		t.Fatalf("fault run: %v\n%s", err, log.String())
	}
	var out strings.Builder
	rep.Print(&out)
	t.Logf("fault run:\n%s%s", log.String(), out.String())
	if rep.Acknowledged == 0 || rep.Kills != 1 {
		t.Fatalf("the run acknowledged %d events across %d kills; want some, across 1", rep.Acknowledged, rep.Kills)
	}
	if rep.Missing != 0 || rep.Doubled != 0 || rep.PresentOnce != rep.Acknowledged {
		t.Errorf("acknowledged %d: present once %d, missing %d, doubled %d; want all present once", rep.Acknowledged, rep.PresentOnce, rep.Missing, rep.Doubled)
	}
	if rep.GoodRefused != 0 || rep.GoodGaveUp != 0 {
		t.Errorf("good batches refused %d, never acknowledged %d; want 0 and 0", rep.GoodRefused, rep.GoodGaveUp)
	}
	for kind, codes := range rep.Poison {
		for code, n := range codes {
			if code >= 500 {
				t.Errorf("poison %q answered %d %d times; want a 4xx (or 2xx once cleaned)", kind, code, n)
			}
		}
	}
}
