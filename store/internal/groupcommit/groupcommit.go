// Package groupcommit is the group commit both stores share: callers queue
// their batches and wait; one writer goroutine fills a group with the
// batches queued, up to a number of rows, commits it in one write and
// answers each caller with its own result. What differs between the
// stores, how a batch is added to a group (dedupe, row building) and how a
// group is written, is passed in as a Writer.
//
// Guarantees: a batch once queued is committed whatever its caller does
// (a caller gives up only before that); every queued batch is answered
// exactly once, also those queued before Close; Run returns only when the
// queue is closed and empty, and Close only when every batch is answered.
package groupcommit

import (
	"context"
	"errors"

	"github.com/apimeter/apimeter"
)

// ErrClosed is the answer to a batch offered to a closed queue.
var ErrClosed = errors.New("store is closed")

// Request is one caller's batch in the queue.
type Request[B any] struct {
	Batch B
	done  chan answer
}

type answer struct {
	res apimeter.AppendResult
	err error
}

// Answer gives the caller its result; call it once per request.
func (r *Request[B]) Answer(res apimeter.AppendResult, err error) {
	r.done <- answer{res, err}
}

// Queue holds the batches waiting for a commit.
type Queue[B any] struct {
	reqs   chan *Request[B]
	quit   chan struct{}
	closed chan struct{}
}

// NewQueue returns a queue that holds up to depth batches before Submit
// waits.
func NewQueue[B any](depth int) *Queue[B] {
	return &Queue[B]{reqs: make(chan *Request[B], depth), quit: make(chan struct{}), closed: make(chan struct{})}
}

// Submit queues batch and returns its answer. It gives up, with ctx's
// error, only while the batch is not yet queued: once queued, the batch is
// written whatever the caller does, so Submit waits for the answer rather
// than report a failure that did not happen.
func (q *Queue[B]) Submit(ctx context.Context, batch B) (apimeter.AppendResult, error) {
	req := &Request[B]{Batch: batch, done: make(chan answer, 1)}
	select {
	case q.reqs <- req:
	case <-q.quit:
		return apimeter.AppendResult{}, ErrClosed
	case <-ctx.Done():
		return apimeter.AppendResult{}, ctx.Err()
	}
	select {
	case a := <-req.done:
		return a.res, a.err
	case <-q.closed:
		select {
		case a := <-req.done:
			return a.res, a.err
		default:
			return apimeter.AppendResult{}, ErrClosed
		}
	}
}

// Poll returns a queued batch without waiting, or nil (for a Writer that
// adds several batches at once).
func (q *Queue[B]) Poll() *Request[B] {
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
type Writer[B any, G Group] interface {
	// Begin returns an empty group.
	Begin() G
	// Add adds a queued batch to g (and may Poll more).
	Add(g G, r *Request[B])
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
func Run[B any, G Group](q *Queue[B], w Writer[B, G], handoff chan<- G) {
	for {
		var first *Request[B]
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
func (q *Queue[B]) Close() {
	close(q.quit)
	<-q.closed
}

// Stopped is closed once Close has begun.
func (q *Queue[B]) Stopped() <-chan struct{} { return q.quit }

// Finished says every batch has been answered: Submit stops waiting for
// answers that will not come. The store calls it once its last commit
// answered (after Run returned and its committer, if any, finished).
func (q *Queue[B]) Finished() { close(q.closed) }

// Len is how many batches wait in the queue.
func (q *Queue[B]) Len() int { return len(q.reqs) }
