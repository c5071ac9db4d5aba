// Package groupcommit is the group commit both stores share, for the API
// calls and for the usage events: callers queue their batches and wait;
// one writer goroutine fills a group with the batches queued, up to a
// number of rows, commits it in one write and answers each caller with its
// own result. What differs between the stores and between the kinds of
// event, the batch and result types, how a batch is added to a group
// (dedupe, row building) and how a group is written, is passed in: the
// types as type parameters, the rest as a Writer.
//
// Guarantees: a batch once queued is committed whatever its caller does
// (a caller gives up only before that); every queued batch is answered
// exactly once, also those queued before Close; Run returns only when the
// queue is closed and empty, and Close only when every batch is answered.
package groupcommit

import (
	"context"
	"errors"
)

// ErrClosed is the answer to a batch offered to a closed queue.
var ErrClosed = errors.New("store is closed")

// Request is one caller's batch in the queue; B is the batch, R the result
// its caller gets (the API calls' and the usage events' differ).
type Request[B, R any] struct {
	Batch B
	done  chan answer[R]
}

type answer[R any] struct {
	res R
	err error
}

// Answer gives the caller its result; call it once per request.
func (r *Request[B, R]) Answer(res R, err error) {
	r.done <- answer[R]{res, err}
}

// Queue holds the batches waiting for a commit.
type Queue[B, R any] struct {
	reqs   chan *Request[B, R]
	quit   chan struct{}
	closed chan struct{}
}

// NewQueue returns a queue that holds up to depth batches before Submit
// waits.
func NewQueue[B, R any](depth int) *Queue[B, R] {
	return &Queue[B, R]{reqs: make(chan *Request[B, R], depth), quit: make(chan struct{}), closed: make(chan struct{})}
}

// Submit queues batch and returns its answer. It gives up, with ctx's
// error, only while the batch is not yet queued: once queued, the batch is
// written whatever the caller does, so Submit waits for the answer rather
// than report a failure that did not happen.
func (q *Queue[B, R]) Submit(ctx context.Context, batch B) (R, error) {
	req := &Request[B, R]{Batch: batch, done: make(chan answer[R], 1)}
	var none R
	select {
	case q.reqs <- req:
	case <-q.quit:
		return none, ErrClosed
	case <-ctx.Done():
		return none, ctx.Err()
	}
	select {
	case a := <-req.done:
		return a.res, a.err
	case <-q.closed:
		select {
		case a := <-req.done:
			return a.res, a.err
		default:
			return none, ErrClosed
		}
	}
}

// Poll returns a queued batch without waiting, or nil (for a Writer that
// adds several batches at once).
func (q *Queue[B, R]) Poll() *Request[B, R] {
	select {
	case r := <-q.reqs:
		return r
	default:
		return nil
	}
}

// Group is a commit being filled.
type Group interface {
	// Full says the group takes no more batches: it holds the most rows
	// of a commit, or a batch broke it.
	Full() bool
}

// Writer is what a store does with the groups Run fills.
type Writer[B, R any, G Group] interface {
	// Begin returns an empty group.
	Begin() G
	// Add adds a queued batch to g (and may Poll more).
	Add(g G, r *Request[B, R])
	// Commit writes g and answers its batches, or hands it to a goroutine
	// that does (see Run).
	Commit(g G)
	// Idle runs after each group, for housekeeping (sweeping the dedupe
	// set).
	Idle()
}

// Run is the writer loop. It takes the first queued batch into a new
// group, then adds the batches that arrive until the group is taken or
// full, and commits it. Taken: with a handoff channel, by a committer
// goroutine receiving it (the longer the commit before it, the larger this
// group: DuckDB flushes one group while the next fills); without one
// (nil), as soon as the queue is empty. Commit is called for groups that
// were not taken. After Stop, each batch still queued is committed in a
// group of its own, then Run returns.
func Run[B, R any, G Group](q *Queue[B, R], w Writer[B, R, G], handoff chan<- G) {
	for {
		var first *Request[B, R]
		select {
		case first = <-q.reqs:
		case <-q.quit:
			for r := q.Poll(); r != nil; r = q.Poll() {
				g := w.Begin()
				w.Add(g, r)
				w.Commit(g)
			}
			return
		}
		g := w.Begin()
		w.Add(g, first)
		taken := false
	fill:
		for !g.Full() {
			if handoff == nil {
				select {
				case r := <-q.reqs:
					w.Add(g, r)
				default:
					break fill
				}
				continue
			}
			select {
			case r := <-q.reqs:
				w.Add(g, r)
			case handoff <- g:
				taken = true
				break fill
			}
		}
		if !taken {
			w.Commit(g)
		}
		w.Idle()
	}
}

// Close ends Run once the queued batches are written, and returns when
// each has been answered (Finished); Submit refuses new batches from now
// on. Call it once.
func (q *Queue[B, R]) Close() {
	close(q.quit)
	<-q.closed
}

// Stopped is closed once Close has begun.
func (q *Queue[B, R]) Stopped() <-chan struct{} { return q.quit }

// Finished says every batch has been answered: Submit stops waiting for
// answers that will not come. The store calls it once its last commit
// answered (after Run returned and its committer, if any, finished).
func (q *Queue[B, R]) Finished() { close(q.closed) }

// Len is how many batches wait in the queue.
func (q *Queue[B, R]) Len() int { return len(q.reqs) }

// List is a Group that keeps its requests in the order they came until it
// holds Max rows: for a Writer that builds its write only in Commit. The
// Writer's Add appends to Reqs and counts the batch's rows in Rows.
type List[B, R any] struct {
	Reqs []*Request[B, R]
	Rows int
	Max  int
}

// Full implements Group.
func (l *List[B, R]) Full() bool { return l.Rows >= l.Max }

// Answer answers the requests of l, each with its own result, or every one
// with err if it is not nil (then res is not read).
func (l *List[B, R]) Answer(res []R, err error) {
	var none R
	for i, r := range l.Reqs {
		if err != nil {
			r.Answer(none, err)
			continue
		}
		r.Answer(res[i], nil)
	}
}
