package duckdb

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
)

// TestPoisonBatchFailsAlone holds one commit so that several batches gather
// in the next; one of them holds a row DuckDB refuses (invalid UTF-8
// becomes NULL and fails the NOT NULL constraint at flush). Only that batch
// may fail: the others that shared its commit are stored.
func TestPoisonBatchFailsAlone(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "events.duckdb"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	held, release := make(chan struct{}), make(chan struct{})
	first := true
	st.beforeFlush = func() error { // the committer only
		if first {
			first = false
			close(held)
			<-release
		}
		return nil
	}
	batch := func(name string, n int, userID string) []apimeter.Event {
		evs := make([]apimeter.Event, n)
		for i := range evs {
			evs[i] = apimeter.Event{ID: fmt.Sprintf("%s-%d", name, i), Org: "o", Env: "e", RequestTime: time.Unix(1e9, 0),
				Method: "GET", URI: "/a", Path: "/a", Status: 200, Weight: 1, UserID: "u"}
		}
		evs[n/2].UserID = userID
		return evs
	}
	type answer struct {
		name string
		res  apimeter.AppendResult
		err  error
	}
	answers := make(chan answer, 16)
	send := func(name string, evs []apimeter.Event) {
		go func() {
			res, err := st.Append(ctx, evs)
			answers <- answer{name, res, err}
		}()
	}
	send("holder", batch("holder", 3, "u"))
	<-held
	const good = 6
	for i := range good {
		name := fmt.Sprintf("good%d", i)
		if i == good/2 {
			send("poison", batch("poison", 5, "bad\xff"))
		}
		send(name, batch(name, 10, "u"))
	}
	for deadline := time.Now().Add(10 * time.Second); st.added.Load() < good+2; {
		if time.Now().After(deadline) {
			t.Fatalf("only %d batches reached the writer", st.added.Load())
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	failed := 0
	for range good + 2 {
		a := <-answers
		switch {
		case a.name == "poison" && a.err == nil:
			t.Errorf("the poison batch was acknowledged (%d stored)", len(a.res.Stored))
		case a.name != "poison" && a.err != nil:
			failed++
			t.Errorf("good batch %s failed with the poison batch: %v", a.name, a.err)
		case a.name != "poison" && len(a.res.Stored) == 0:
			t.Errorf("good batch %s stored nothing", a.name)
		}
	}
	var n int
	if err := st.DB().QueryRowContext(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if want := 3 + good*10; n != want {
		t.Errorf("%d rows stored, want %d (the holder's and the good batches'; %d good batches failed)", n, want, failed)
	}
	// The poison batch's good events are not remembered as stored: once
	// fixed, the batch is stored whole.
	res, err := st.Append(ctx, batch("poison", 5, "u"))
	if err != nil || len(res.Stored) != 5 {
		t.Errorf("the poison batch, fixed: %d stored, %v; want 5 stored", len(res.Stored), err)
	}
}

// TestMetadataMadeValid: metadata given to Append with invalid UTF-8 or a
// lone surrogate (callers other than the collector) is stored with U+FFFD
// in their place rather than failing the commit.
func TestMetadataMadeValid(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "events.duckdb"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e := apimeter.Event{ID: "m", Org: "o", Env: "e", RequestTime: time.Unix(1e9, 0), Method: "GET", URI: "/a", Path: "/a",
		Status: 200, Weight: 1, Metadata: []byte("{\"a\":\"x\xffy\",\"b\":\"\\ud800\"}")}
	if _, err := st.Append(ctx, []apimeter.Event{e}); err != nil {
		t.Fatalf("Append: %v", err)
	}
	got, err := st.Events(ctx, apimeter.EventFilter{Org: "o", Env: "e", Limit: 1})
	if err != nil || len(got) != 1 {
		t.Fatalf("Events: %v %v", got, err)
	}
	if want := `{"a":"x` + "\uFFFD" + `y","b":"\ufffd"}`; string(got[0].Metadata) != want {
		t.Errorf("metadata stored as %q, want %q", got[0].Metadata, want)
	}
}
