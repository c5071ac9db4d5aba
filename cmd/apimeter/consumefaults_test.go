package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/httpmsg"
	"github.com/apimeter/apimeter/internal/loadrun"
)

// TestConsumeFaultRun is a short `apimeter bench consume-faults`: calls
// written to a kfake topic as Azure APIM's policy writes them (the
// request and response of testdata/apim/01, each pair with an id of its
// own) while the
// `apimeter consume` child is SIGKILLed twice and restarted. Every call
// the broker acknowledged must be stored exactly once. The time to stored
// is logged, not asserted.
func TestConsumeFaultRun(t *testing.T) {
	if testing.Short() {
		t.Skip("a 35 s fault run; skipped with -short")
	}
	vector := func(name string) *httpmsg.Message {
		b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "apim", name))
		if err != nil {
			t.Fatal(err)
		}
		m, err := httpmsg.Decode(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return &m
	}
	var log strings.Builder
	rep, err := loadrun.ConsumeFaults(context.Background(), loadrun.ConsumeFaultConfig{
		Bin: os.Args[0], Env: []string{"APIMETER_TEST_AS_MAIN=1"},
		Request: vector("01-get-request.txt"), Response: vector("01-get-response.txt"),
		// The kills are 10 s apart, past the 6 s session timeout (the
		// broker's least) and the rejoin after it: a member killed while the
		// group still waits for the one killed before holds the group up to
		// the rebalance timeout (franz-go's 60 s), which is the group
		// protocol's rule, not the consumer's (docs/reliability.md).
		Duration: 30 * time.Second, Rate: 100, Kills: 2, Down: 500 * time.Millisecond, SessionTimeout: 6 * time.Second, Out: &log,
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
