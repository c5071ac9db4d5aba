package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/internal/loadrun"
)

// TestGatewayFaultRun is a short `apimeter bench gateway-faults`: API
// clients through a gateway child process whose quota counters are on a
// redis-server child, stopped with SIGSTOP, then killed and restarted,
// and whose collector child is killed and restarted. Every call must be
// answered 200 and stored once; none dropped or failed. Latencies are
// logged, not asserted (docs/reliability.md has the measured table).
func TestGatewayFaultRun(t *testing.T) {
	if testing.Short() {
		t.Skip("a 20 s fault run; skipped with -short")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not on the PATH (CI installs it)")
	}
	var log strings.Builder
	rep, err := loadrun.GatewayFaults(context.Background(), loadrun.GatewayFaultConfig{
		Bin: os.Args[0], Env: []string{"APIMETER_TEST_AS_MAIN=1"},
		Clients: 4, Pace: 10 * time.Millisecond, MaxCalls: 20000,
		Phase: 2 * time.Second, RedisStop: 3 * time.Second, RedisDown: 2 * time.Second, CollectorDown: 4 * time.Second, Out: &log,
	})
	if err != nil {
		t.Fatalf("gateway fault run: %v\n%s", err, log.String())
	}
	var out strings.Builder
	rep.Print(&out)
	t.Logf("gateway fault run:\n%s%s", log.String(), out.String())
	if rep.Acknowledged == 0 || rep.Lost != 0 || rep.Doubled != 0 || rep.PresentOnce != rep.Acknowledged {
		t.Errorf("acknowledged %d: stored once %d, lost %d, doubled %d; want all stored once", rep.Acknowledged, rep.PresentOnce, rep.Lost, rep.Doubled)
	}
	if rep.Dropped != 0 || rep.Failed != 0 {
		t.Errorf("gateway dropped %.0f and failed %.0f events; want none while its queue has room", rep.Dropped, rep.Failed)
	}
	for _, p := range rep.Phases {
		if p.Errors != 0 {
			t.Errorf("phase %q: %d of %d calls not answered 200; a dependency's fault must not reach the API's clients", p.Name, p.Errors, p.Calls)
		}
	}
}
