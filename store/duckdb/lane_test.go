package duckdb

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
)

// TestPipelineDuplicatesOfAFailedCommit sends a batch and, while its commit
// is held, the same batch again: the second finds the events already
// pending. When the first commit fails, the second must fail too (neither
// stored them), and a third try must store every event once. When the
// first commit succeeds, the second counts duplicates.
func TestPipelineDuplicatesOfAFailedCommit(t *testing.T) {
	for _, fail := range []bool{true, false} {
		t.Run("first commit fails="+strconv.FormatBool(fail), func(t *testing.T) {
			ctx := context.Background()
			st, err := Open(ctx, filepath.Join(t.TempDir(), "events.duckdb"), Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			held, release := make(chan struct{}), make(chan struct{})
			defer func() { // before Close, which waits for the held commit
				select {
				case <-release:
				default:
					close(release)
				}
			}()
			first := true
			st.beforeFlush = func() error { // runs on the committer only
				if !first {
					return nil
				}
				first = false
				close(held)
				<-release
				if fail {
					return errors.New("injected failure")
				}
				return nil
			}
			batch := make([]apimeter.Event, 20)
			for i := range batch {
				batch[i] = apimeter.Event{ID: "ev" + strconv.Itoa(i), Org: "o", Env: "e", RequestTime: time.Unix(1e9, 0), Method: "GET", Status: 200, Weight: 1}
			}
			type answer struct {
				res apimeter.AppendResult
				err error
			}
			send := func() chan answer {
				ch := make(chan answer, 1)
				go func() {
					res, err := st.Append(ctx, append([]apimeter.Event(nil), batch...))
					ch <- answer{res, err}
				}()
				return ch
			}
			a1 := send()
			<-held
			a2 := send()
			// Wait until the writer has added the second batch to the job
			// behind the held commit.
			for deadline := time.Now().Add(10 * time.Second); st.added.Load() < 2; {
				if time.Now().After(deadline) {
					t.Fatal("the second batch never reached the writer")
				}
				time.Sleep(time.Millisecond)
			}
			close(release)
			r1, r2 := <-a1, <-a2
			if fail {
				if r1.err == nil || r2.err == nil {
					t.Fatalf("first commit failed: want both batches to fail, got %v / %v (second: %d stored, %d duplicates)", r1.err, r2.err, len(r2.res.Stored), r2.res.Duplicates)
				}
				r3 := <-send()
				if r3.err != nil || len(r3.res.Stored) != len(batch) {
					t.Fatalf("retry after the failure: %d stored, err %v; want %d stored", len(r3.res.Stored), r3.err, len(batch))
				}
			} else {
				if r1.err != nil || r2.err != nil {
					t.Fatalf("errors: %v / %v", r1.err, r2.err)
				}
				if len(r1.res.Stored) != len(batch) || r2.res.Duplicates != len(batch) {
					t.Fatalf("first stored %d, second counted %d duplicates; want %d and %d", len(r1.res.Stored), r2.res.Duplicates, len(batch), len(batch))
				}
			}
			var n int
			if err := st.DB().QueryRowContext(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != len(batch) {
				t.Fatalf("%d rows stored, want %d", n, len(batch))
			}
		})
	}
}
