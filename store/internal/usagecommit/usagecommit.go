// Package usagecommit is what the stores' usage-event writers share on top
// of groupcommit: the batch (the events of one AppendUsage call and their
// dedupe keys), its queue and group, and the pass over a group that
// counts duplicates and writes the rest. How a key is made, what counts as
// already seen and how a row is written stay with each store.
package usagecommit

import (
	"context"

	"github.com/zeebo/xxh3"

	"github.com/apimeter/apimeter/meter"
	"github.com/apimeter/apimeter/store/internal/groupcommit"
)

// Batch is the events of one AppendUsage call and their dedupe keys.
type Batch struct {
	Events []meter.Event
	Keys   []xxh3.Uint128
}

type (
	// Queue holds the batches waiting for a commit.
	Queue = groupcommit.Queue[*Batch, meter.AppendResult]
	// Request is one queued batch.
	Request = groupcommit.Request[*Batch, meter.AppendResult]
	// Group is the batches of one commit.
	Group = groupcommit.List[*Batch, meter.AppendResult]
)

// NewQueue returns a queue of depth batches.
func NewQueue(depth int) *Queue { return groupcommit.NewQueue[*Batch, meter.AppendResult](depth) }

// Committer is a store's usage writer.
type Committer interface {
	// Commit writes g in one transaction (or INSERT) and answers each of
	// its batches once it is durable, or all with the error.
	Commit(g *Group)
}

// DefaultMaxGroupRows bounds a group's rows unless configured otherwise.
const DefaultMaxGroupRows = 65536

// Start runs the group commit for c on q in a goroutine, with groups of
// at most maxRows rows (a group's last batch may cross it; zero means
// DefaultMaxGroupRows). q.Close returns once every queued batch is
// answered.
func Start(q *Queue, c Committer, maxRows int) {
	if maxRows <= 0 {
		maxRows = DefaultMaxGroupRows
	}
	go func() {
		groupcommit.Run(q, writer{c, maxRows}, nil)
		q.Finished()
	}()
}

// writer adapts a Committer to groupcommit.Writer: without a committer
// goroutine, a group is written as soon as the queue is empty or it is
// full.
type writer struct {
	c   Committer
	max int
}

func (w writer) Begin() *Group { return &Group{Max: w.max} }

func (w writer) Add(g *Group, r *Request) {
	g.Reqs = append(g.Reqs, r)
	g.Rows += len(r.Batch.Events)
}

func (w writer) Commit(g *Group) { w.c.Commit(g) }

func (w writer) Idle() {}

// Submit keys events with key, queues them and returns their answer (see
// groupcommit.Queue.Submit).
func Submit(ctx context.Context, q *Queue, events []meter.Event, key func(*meter.Event) xxh3.Uint128) (meter.AppendResult, error) {
	if len(events) == 0 {
		return meter.AppendResult{}, nil
	}
	b := &Batch{Events: events, Keys: make([]xxh3.Uint128, len(events))}
	for i := range events {
		b.Keys[i] = key(&events[i])
	}
	return q.Submit(ctx, b)
}

// Fill passes over the events of g in order: one whose key dup says is
// seen is counted a duplicate, any other is handed to add (which marks it
// seen and appends its row) and counted stored. It returns each batch's
// result, or add's first error.
func Fill(g *Group, dup func(xxh3.Uint128) bool, add func(xxh3.Uint128, *meter.Event) error) ([]meter.AppendResult, error) {
	res := make([]meter.AppendResult, len(g.Reqs))
	for gi, r := range g.Reqs {
		b := r.Batch
		for i := range b.Events {
			k := b.Keys[i]
			if dup(k) {
				res[gi].Duplicates++
				continue
			}
			if err := add(k, &b.Events[i]); err != nil {
				return nil, err
			}
			res[gi].Stored++
		}
	}
	return res, nil
}
