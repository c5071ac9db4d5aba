package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/apimeter/apimeter"
)

// group is a test group: the batches (numbers of events) it holds.
type group struct {
	reqs []*Request[int]
	rows int
	max  int
}

func (g *group) Full() bool { return g.rows >= g.max }

// writer answers each batch with as many stored events as it held, and
// records the groups it committed.
type writer struct {
	max       int
	mu        sync.Mutex
	committed [][]int
}

func (w *writer) Begin() *group { return &group{max: w.max} }

func (w *writer) Add(g *group, r *Request[int]) {
	g.reqs = append(g.reqs, r)
	g.rows += r.Batch
}

func (w *writer) Commit(g *group) {
	var sizes []int
	for _, r := range g.reqs {
		sizes = append(sizes, r.Batch)
		r.Answer(apimeter.AppendResult{Stored: make([]*apimeter.Event, r.Batch)}, nil)
	}
	w.mu.Lock()
	w.committed = append(w.committed, sizes)
	w.mu.Unlock()
}

func (w *writer) Idle() {}

// TestEveryBatchAnsweredOnce: with and without a committer goroutine,
// every submitted batch is committed in exactly one group and answered
// with its own result, no group holds more rows than the bound allows
// beyond its last batch, and Close returns after the last answer.
func TestEveryBatchAnsweredOnce(t *testing.T) {
	for _, handoff := range []bool{false, true} {
		t.Run(fmt.Sprintf("handoff=%v", handoff), func(t *testing.T) {
			q := NewQueue[int](16)
			w := &writer{max: 10}
			var ch chan *group
			committerDone := make(chan struct{})
			if handoff {
				ch = make(chan *group)
				go func() {
					defer close(committerDone)
					for g := range ch {
						w.Commit(g)
					}
				}()
			} else {
				close(committerDone)
			}
			runDone := make(chan struct{})
			go func() {
				defer close(runDone)
				Run(q, w, ch)
				if ch != nil {
					close(ch)
				}
				<-committerDone
				q.Finished()
			}()
			const callers, each = 8, 25
			var wg sync.WaitGroup
			errs := make(chan error, callers*each)
			for c := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						n := 1 + (c+i)%4
						res, err := q.Submit(context.Background(), n)
						if err != nil || len(res.Stored) != n {
							errs <- fmt.Errorf("batch of %d: stored %d, err %v", n, len(res.Stored), err)
						}
					}
				}()
			}
			wg.Wait()
			q.Close()
			<-runDone
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			total, batches := 0, 0
			for _, g := range w.committed {
				rows := 0
				for i, n := range g {
					if rows >= w.max {
						t.Errorf("group %v took batch %d after reaching %d rows", g, i, w.max)
					}
					rows += n
					batches++
				}
				total += rows
			}
			want := 0
			for c := range callers {
				for i := range each {
					want += 1 + (c+i)%4
				}
			}
			if batches != callers*each || total != want {
				t.Errorf("%d batches of %d events committed, want %d of %d", batches, total, callers*each, want)
			}
			if _, err := q.Submit(context.Background(), 1); !errors.Is(err, ErrClosed) {
				t.Errorf("Submit after Close: %v, want ErrClosed", err)
			}
		})
	}
}

// TestSubmitGivesUpOnlyBeforeQueued: a caller whose context ends before
// the queue takes its batch gets the context's error, and nothing is
// committed for it.
func TestSubmitGivesUpOnlyBeforeQueued(t *testing.T) {
	q := NewQueue[int](0) // no room: the batch waits for the writer
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := q.Submit(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Submit with an ended context: %v, want context.Canceled", err)
	}
	if n := q.Len(); n != 0 {
		t.Fatalf("%d batches queued, want 0", n)
	}
}
