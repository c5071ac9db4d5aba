package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/internal/loadrun"
)

// TestConsumeFaultRun is a short `apimeter bench consume-faults`: calls
// written to a kfake topic as Azure APIM's policy writes them while the
// `apimeter consume` child is SIGKILLed twice and restarted. Every call
// the broker acknowledged must be stored exactly once. The time to stored
// is logged, not asserted.
func TestConsumeFaultRun(t *testing.T) {
	if testing.Short() {
		t.Skip("a 15 s fault run; skipped with -short")
	}
	var log strings.Builder
	rep, err := loadrun.ConsumeFaults(context.Background(), loadrun.ConsumeFaultConfig{
		Bin: os.Args[0], Env: []string{"APIMETER_TEST_AS_MAIN=1"},
		Duration: 12 * time.Second, Rate: 100, Kills: 2, Down: 500 * time.Millisecond, SessionTimeout: 6 * time.Second, Out: &log,
	})
	if err != nil {
		t.Fatalf("consume fault run: %v\n%s", err, log.String())
	}
	var out strings.Builder
	rep.Print(&out)
	t.Logf("consume fault run:\n%s%s", log.String(), out.String())
	if rep.Kills != 2 || rep.Acknowledged == 0 {
		t.Fatalf("%d calls acknowledged across %d kills; want some, across 2", rep.Acknowledged, rep.Kills)
	}
	if rep.Lost != 0 || rep.Doubled != 0 || rep.PresentOnce != rep.Acknowledged {
		t.Errorf("acknowledged %d: stored once %d, lost %d, doubled %d; want every call stored once", rep.Acknowledged, rep.PresentOnce, rep.Lost, rep.Doubled)
	}
}
