// Package breaker keeps a hung or dead dependency (Redis) from slowing the
// calls that use it: every call gets a short deadline, and after a few
// failures in a row the circuit opens and calls fail at once, until a
// probe after a cool-down finds the dependency answering again. It is
// github.com/sony/gobreaker with the deadline around each call and one
// log line per change of state.
package breaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Defaults for Config.
const (
	DefaultTimeout  = 50 * time.Millisecond
	DefaultFailures = 5
	DefaultOpenFor  = 5 * time.Second
)

// ErrOpen is the error of a call not made because the circuit is open
// (or half-open with its probe under way).
var ErrOpen = errors.New("circuit open")

// Config configures a Breaker. Zero values are the defaults.
type Config struct {
	// Name says what the breaker guards, in errors and log lines.
	Name string
	// Timeout bounds each call. Negative means no deadline.
	Timeout time.Duration
	// Failures in a row open the circuit.
	Failures int
	// OpenFor is how long the circuit stays open before one probe call.
	OpenFor time.Duration
	// Detach runs each call in a goroutine of its own, so that Do returns
	// at the deadline even if the call does not heed its context; the call
	// is left to finish on its own, and must not write anything its caller
	// reads after Do returned an error. Without it the call must heed its
	// context (a go-redis client needs ContextTimeoutEnabled).
	Detach bool
	Logger *slog.Logger
}

// Breaker guards one dependency. It is safe for concurrent use.
type Breaker struct {
	cfg  Config
	cb   *gobreaker.CircuitBreaker[struct{}]
	open atomic.Bool
}

// New returns a closed Breaker.
func New(cfg Config) *Breaker {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Failures <= 0 {
		cfg.Failures = DefaultFailures
	}
	if cfg.OpenFor <= 0 {
		cfg.OpenFor = DefaultOpenFor
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Breaker{cfg: cfg}
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:    cfg.Name,
		Timeout: cfg.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= uint32(cfg.Failures)
		},
		// A caller that went away says nothing of the dependency.
		IsExcluded: func(err error) bool { return errors.Is(err, errCallerGone) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			b.open.Store(to != gobreaker.StateClosed)
			switch to {
			case gobreaker.StateOpen:
				cfg.Logger.Warn("circuit open: calls fail at once until a probe succeeds", "dependency", name, "from", from.String(),
					"failures_in_a_row", cfg.Failures, "probe_after", cfg.OpenFor)
			case gobreaker.StateHalfOpen:
				cfg.Logger.Info("circuit half-open: probing", "dependency", name)
			case gobreaker.StateClosed:
				cfg.Logger.Info("circuit closed: answering again", "dependency", name)
			}
		},
	})
	return b
}

var errCallerGone = errors.New("caller went away")

// Do calls f with a context that ends after Config.Timeout, unless the
// circuit is open: then it returns an error wrapping ErrOpen at once.
func (b *Breaker) Do(ctx context.Context, f func(ctx context.Context) error) error {
	_, err := b.cb.Execute(func() (struct{}, error) {
		if b.cfg.Timeout < 0 {
			return struct{}{}, b.judge(ctx, f(ctx))
		}
		cctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
		if !b.cfg.Detach {
			defer cancel()
			return struct{}{}, b.judge(ctx, f(cctx))
		}
		done := make(chan error, 1)
		go func() {
			defer cancel()
			done <- f(cctx)
		}()
		select {
		case err := <-done:
			return struct{}{}, b.judge(ctx, err)
		case <-cctx.Done():
			return struct{}{}, b.judge(ctx, cctx.Err())
		}
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return fmt.Errorf("%s: %w", b.cfg.Name, ErrOpen)
	}
	return err
}

// judge is a call's error as the breaker counts it: none when the caller
// went away (that says nothing of the dependency), a timeout named.
func (b *Breaker) judge(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("%w: %w", errCallerGone, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: no answer within %v: %w", b.cfg.Name, b.cfg.Timeout, err)
	}
	return err
}

// Open reports whether the circuit is open or half-open now.
func (b *Breaker) Open() bool { return b.open.Load() }

// State is the circuit's state: "closed", "open" or "half-open".
func (b *Breaker) State() string { return b.cb.State().String() }
