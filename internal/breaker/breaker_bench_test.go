package breaker_test

import (
	"context"
	"testing"

	"github.com/apimeter/apimeter/internal/breaker"
	"github.com/apimeter/apimeter/internal/redistest"
)

// BenchmarkRedisCall measures one INCR on a real redis-server: "direct"
// as before, "guarded" through a Breaker (deadline, circuit, and with
// Detach a goroutine per call, as the gateway's quota checks run), and
// "guarded-inline" without Detach (the call heeds its context). The ratios
// are the guard's cost on a healthy Redis.
func BenchmarkRedisCall(b *testing.B) {
	rs := redistest.StartServer(b)
	ctx := context.Background()
	incr := func(ctx context.Context) error { return rs.Client.Incr(ctx, "bench").Err() }
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			if err := incr(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, detach := range []bool{true, false} {
		name := "guarded"
		if !detach {
			name = "guarded-inline"
		}
		b.Run(name, func(b *testing.B) {
			g := breaker.New(breaker.Config{Name: "bench", Detach: detach})
			for b.Loop() {
				if err := g.Do(ctx, incr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestBreakerOpensAndCloses: calls that outlive the deadline open the
// circuit after Failures in a row; then calls fail with ErrOpen without
// running; after OpenFor one probe runs and, when it succeeds, closes it.
func TestBreakerOpensAndCloses(t *testing.T) {
	g := breaker.New(breaker.Config{Name: "t", Failures: 3, OpenFor: 1, Detach: true})
	hang := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	for i := range 3 {
		if err := g.Do(context.Background(), hang); err == nil {
			t.Fatalf("call %d: no error from a call past its deadline", i)
		}
	}
	if !g.Open() {
		t.Fatal("circuit closed after 3 failures in a row")
	}
	// OpenFor of 1 ns has passed: the next call is the probe.
	ran := false
	if err := g.Do(context.Background(), func(context.Context) error { ran = true; return nil }); err != nil || !ran || g.Open() {
		t.Fatalf("probe: err %v, ran %v, open %v; want it run and the circuit closed", err, ran, g.Open())
	}
	// A caller that went away does not count against the dependency.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 5 {
		g.Do(ctx, hang)
	}
	if g.Open() {
		t.Fatal("circuit opened by callers that went away")
	}
}

// BenchmarkGuardOverhead is the guard's own cost, around a call that does
// nothing: the floor ("direct") against Do with and without Detach.
func BenchmarkGuardOverhead(b *testing.B) {
	ctx := context.Background()
	nop := func(context.Context) error { return nil }
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			nop(ctx)
		}
	})
	for _, detach := range []bool{true, false} {
		name := "guarded"
		if !detach {
			name = "guarded-inline"
		}
		b.Run(name, func(b *testing.B) {
			g := breaker.New(breaker.Config{Name: "bench", Detach: detach})
			for b.Loop() {
				g.Do(ctx, nop)
			}
		})
	}
}
