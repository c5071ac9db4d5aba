package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// DefaultQueryTimeout bounds each read query (Metrics API, events) when
// Config.QueryTimeout is zero.
const DefaultQueryTimeout = 30 * time.Second

// Errors a read query's context ends with (context.Cause).
var (
	// ErrQueryTimeout: the query ran past its timeout.
	ErrQueryTimeout = errors.New("query timeout")
	// ErrShuttingDown: the server is shutting down.
	ErrShuttingDown = errors.New("server shutting down")
)

// Queries bounds the read queries of a server: each runs with a deadline
// the engines enforce themselves (DuckDB interrupts the query when its
// context ends; clickhouse-go sends the deadline as max_execution_time and
// cancels the query on the server when the context ends), ends when its
// client goes away, and all end when the server shuts down, so that a
// graceful shutdown never waits on a query.
type Queries struct {
	timeout time.Duration
	stop    context.Context
	cancel  context.CancelFunc
	once    sync.Once
}

// NewQueries returns Queries with the given timeout (<= 0: the default).
func NewQueries(timeout time.Duration) *Queries {
	if timeout <= 0 {
		timeout = DefaultQueryTimeout
	}
	stop, cancel := context.WithCancel(context.Background())
	return &Queries{timeout: timeout, stop: stop, cancel: cancel}
}

// Timeout is the deadline of each query.
func (q *Queries) Timeout() time.Duration { return q.timeout }

// Context returns the context to run one query of a request with parent
// context parent (the request's: it ends when the client goes away).
func (q *Queries) Context(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	tctx, tcancel := context.WithTimeoutCause(ctx, q.timeout, ErrQueryTimeout)
	stopWatch := context.AfterFunc(q.stop, func() { cancel(ErrShuttingDown) })
	return tctx, func() {
		stopWatch()
		tcancel()
		cancel(context.Canceled)
	}
}

// Stop ends every running query and refuses new ones; register it with
// http.Server.RegisterOnShutdown.
func (q *Queries) Stop() { q.once.Do(q.cancel) }

// Err returns, for a query that failed with err in ctx (from Context),
// the *APIError to answer with when the query was cut by its deadline or
// the shutdown, context.Canceled when the client went away, else err.
func (q *Queries) Err(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	cause := context.Cause(ctx)
	if ctx.Err() == nil {
		// A driver may fail at the deadline a moment before the context
		// says so (clickhouse-go sets it on the connection: "i/o
		// timeout").
		d, ok := ctx.Deadline()
		if !ok || time.Now().Before(d) {
			return err
		}
		cause = ErrQueryTimeout
	}
	switch cause {
	case ErrQueryTimeout:
		return &APIError{Status: http.StatusServiceUnavailable, Code: "query_timeout",
			Message: fmt.Sprintf("the query did not finish within the query timeout of %s (--query-timeout); narrow the time range or the filter", q.timeout)}
	case ErrShuttingDown:
		return &APIError{Status: http.StatusServiceUnavailable, Code: "shutting_down", Message: "the server is shutting down; retry"}
	}
	return context.Canceled
}
