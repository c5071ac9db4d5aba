package usagecommit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/zeebo/xxh3"

	"github.com/apimeter/apimeter/meter"
	"github.com/apimeter/apimeter/store/internal/groupcommit"
)

// memory is a Committer over a map: what it stores stays, a group whose
// events include one of ID "fail" is refused whole and leaves nothing.
type memory struct {
	seen    map[xxh3.Uint128]bool
	mu      sync.Mutex
	maxRows int
	groups  int
}

func (m *memory) Commit(g *Group) {
	var added []xxh3.Uint128
	res, err := Fill(g, func(k xxh3.Uint128) bool { return m.seen[k] }, func(k xxh3.Uint128, e *meter.Event) error {
		if e.ID == "fail" {
			return errors.New("refused")
		}
		m.seen[k] = true
		added = append(added, k)
		return nil
	})
	if err != nil {
		for _, k := range added {
			delete(m.seen, k)
		}
	}
	m.mu.Lock()
	m.groups++
	m.maxRows = max(m.maxRows, g.Rows-len(g.Reqs[len(g.Reqs)-1].Batch.Events))
	m.mu.Unlock()
	g.Answer(res, err)
}

func key(e *meter.Event) xxh3.Uint128 { return xxh3.HashString128(e.Source + "\x00" + e.ID) }

func events(ids ...string) []meter.Event {
	out := make([]meter.Event, len(ids))
	for i, id := range ids {
		out[i] = meter.Event{Source: "s", ID: id}
	}
	return out
}

// TestDedupeFailureAndClose: concurrent batches are each answered with
// their own counts, an id sent twice (in one batch, across batches) is
// stored once, a refused group answers every batch in it with the error
// and stores none of them (a retry stores them), no group passes its row
// bound before its last batch, and Close answers every queued batch
// before it returns.
func TestDedupeFailureAndClose(t *testing.T) {
	q := NewQueue(8)
	m := &memory{seen: map[xxh3.Uint128]bool{}}
	const maxRows = 10
	Start(q, m, maxRows)

	res, err := Submit(context.Background(), q, events("a", "b", "a"), key)
	if err != nil || res.Stored != 2 || res.Duplicates != 1 {
		t.Fatalf("first batch: %+v, %v; want 2 stored, 1 duplicate", res, err)
	}
	if res, err = Submit(context.Background(), q, events("fail", "c"), key); err == nil {
		t.Fatalf("batch with a refused event: %+v, want an error", res)
	}
	if res, err = Submit(context.Background(), q, events("c", "b"), key); err != nil || res.Stored != 1 || res.Duplicates != 1 {
		t.Fatalf("retry after a failure: %+v, %v; want 1 stored (c), 1 duplicate (b)", res, err)
	}

	const callers, each = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, callers*each)
	for c := range callers {
		wg.Go(func() {
			for i := range each {
				id := strconv.Itoa(c*each + i)
				// Every id twice in one batch and once more in the next.
				r, err := Submit(context.Background(), q, events(id, id, strconv.Itoa(c*each+i-1)), key)
				if err != nil || r.Stored+r.Duplicates != 3 || r.Duplicates < 1 {
					errs <- fmt.Errorf("batch %s: %+v, %v", id, r, err)
				}
			}
		})
	}
	wg.Wait()
	q.Close()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// a, b, c and the callers' ids 0..159 (the -1 of caller 0's first).
	if want := 3 + callers*each + 1; len(m.seen) != want {
		t.Errorf("%d ids stored, want %d", len(m.seen), want)
	}
	if m.maxRows >= maxRows {
		t.Errorf("a group held %d rows before its last batch, bound %d", m.maxRows, maxRows)
	}
	if _, err := Submit(context.Background(), q, events("z"), key); !errors.Is(err, groupcommit.ErrClosed) {
		t.Errorf("Submit after Close: %v, want ErrClosed", err)
	}
	if r, err := Submit(context.Background(), q, nil, key); err != nil || r != (meter.AppendResult{}) {
		t.Errorf("empty batch: %+v, %v", r, err)
	}
}
