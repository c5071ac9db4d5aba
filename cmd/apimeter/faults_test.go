package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/internal/loadrun"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
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

// TestFaultRunClickHouse is a short `apimeter bench faults --clickhouse`:
// retrying senders while the collector (on a clickhouse-server child and
// a redis-server child) is SIGKILLed and restarted, clickhouse-server
// itself is SIGKILLed and restarted on the same data, and Redis is
// stopped. A 503 while ClickHouse is down is right; an acknowledged event
// missing (a 2xx for unstored data) or inserted twice (the rollups would
// count it twice) is not. Latencies are logged, not asserted.
func TestFaultRunClickHouse(t *testing.T) {
	if testing.Short() {
		t.Skip("a 25 s fault run; skipped with -short")
	}
	chtest.Shared(t) // skips (or fails, in CI) without clickhouse-server
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not on the PATH (CI installs it)")
	}
	var log strings.Builder
	rep, err := loadrun.Faults(context.Background(), loadrun.FaultConfig{
		Bin: os.Args[0], Env: []string{"APIMETER_TEST_AS_MAIN=1"},
		Duration: 24 * time.Second, Senders: 2, Batch: 50, Kills: 1, RedisStop: 2 * time.Second,
		ClickHouse: true, ClickHouseDown: 3 * time.Second, SlowClients: 5, Poison: true, Out: &log,
	})
	if err != nil {
		t.Fatalf("fault run: %v\n%s", err, log.String())
	}
	var out strings.Builder
	rep.Print(&out)
	t.Logf("fault run:\n%s%s", log.String(), out.String())
	if rep.Acknowledged == 0 || rep.Kills != 1 || rep.ClickHouseDown == 0 {
		t.Fatalf("the run acknowledged %d events across %d kills, ClickHouse down %s; want some, across 1 kill and a ClickHouse kill", rep.Acknowledged, rep.Kills, rep.ClickHouseDown)
	}
	// An event the events table holds but the views on it missed (the
	// server killed between the two writes of one INSERT) is a limit of
	// ClickHouse 18.16's views, reported and not asserted: where the kill
	// lands is timing.
	if rep.Missing != 0 || rep.Doubled != 0 || rep.PresentOnce+rep.ViewMissed != rep.Acknowledged {
		t.Errorf("acknowledged %d: present once %d, missed by the views %d, missing %d, doubled %d (by phase: %v); want all present once", rep.Acknowledged, rep.PresentOnce, rep.ViewMissed, rep.Missing, rep.Doubled, rep.DoubledIn)
	}
	if rep.GoodRefused != 0 || rep.GoodGaveUp != 0 {
		t.Errorf("good batches refused %d, never acknowledged %d; want 0 and 0", rep.GoodRefused, rep.GoodGaveUp)
	}
	for _, p := range rep.Phases {
		for code, n := range p.Statuses {
			if code != 0 && code != 200 && code != 503 {
				t.Errorf("phase %q: %d good posts answered %d; want 200, or 503 (or no answer) while something is down", p.Name, n, code)
			}
		}
	}
}
