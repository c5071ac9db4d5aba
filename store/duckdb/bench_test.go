package duckdb

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/workload"
)

func benchEvents(b *testing.B, n int) []apimeter.Event {
	b.Helper()
	gen := workload.New(1, 24*time.Hour)
	gen.IDs = true
	scrubber := scrub.New(nil, nil, -1)
	out := make([]apimeter.Event, n)
	for i := range out {
		m := gen.Event()
		ev, err := m.ToEvent("bench", "prod", i)
		if err != nil {
			b.Fatal(err)
		}
		scrubber.Scrub(&ev)
		out[i] = ev
	}
	return out
}

// BenchmarkAppend compares Store.Append (dedupe check, detail encoding,
// one writer, a commit per call) with its limit, a bare DuckDB appender
// writing the same rows with a commit every 500, in the same run. One op
// is one event.
//
//	go test ./store/duckdb -run XXX -bench Append -benchtime 100000x
func BenchmarkAppend(b *testing.B) {
	const batch = 500
	b.Run("raw-appender", func(b *testing.B) {
		events := benchEvents(b, b.N)
		raw, err := OpenRaw(context.Background(), filepath.Join(b.TempDir(), "raw.duckdb"))
		if err != nil {
			b.Fatal(err)
		}
		defer raw.Close()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < len(events); i += batch {
			if err := raw.Append(events[i:min(i+batch, len(events))]); err != nil {
				b.Fatal(err)
			}
			if err := raw.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("store", func(b *testing.B) {
		events := benchEvents(b, b.N)
		for i := range events {
			events[i].ID = strconv.Itoa(i) // distinct ids: nothing is skipped
		}
		st, err := Open(context.Background(), filepath.Join(b.TempDir(), "events.duckdb"), Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < len(events); i += batch {
			res, err := st.Append(context.Background(), events[i:min(i+batch, len(events))])
			if err != nil {
				b.Fatal(err)
			}
			if len(res.Stored) != min(batch, len(events)-i) {
				b.Fatalf("stored %d of %d", len(res.Stored), min(batch, len(events)-i))
			}
		}
	})
}
