package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/store/duckdb"
	"github.com/apimeter/apimeter/workload"
)

// counts returns stored rows and the sum of their weights for acme/prod.
func (e *env) counts() (rows, weight int64) {
	e.t.Helper()
	err := e.store.DB().QueryRow(`SELECT count(*), coalesce(sum(weight), 0) FROM events WHERE org = 'acme' AND env = 'prod'`).Scan(&rows, &weight)
	if err != nil {
		e.t.Fatal(err)
	}
	return rows, weight
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIdempotentIngest(t *testing.T) {
	gen := workload.New(3, time.Hour)
	batchA := gen.Batch(40)
	batchB := append(append([]moesif.Event{}, batchA[20:]...), gen.Batch(20)...) // overlaps A by half

	// The same call sent twice by an SDK without an explicit event_id:
	// identified by its X-Moesif-Transaction-Id header.
	retry := gen.Event()
	withID := retry
	withID.EventID = retry.Request.Headers[len(retry.Request.Headers)-1].Value // the transaction id

	cases := []struct {
		name    string
		batches [][]moesif.Event
		single  []moesif.Event
		want    int64
	}{
		{name: "same batch twice", batches: [][]moesif.Event{batchA, batchA}, want: 40},
		{name: "overlapping by half", batches: [][]moesif.Event{batchA, batchB}, want: 60},
		{name: "duplicates inside one batch", batches: [][]moesif.Event{append(append([]moesif.Event{}, batchA...), batchA[:10]...)}, want: 40},
		{name: "event_id and transaction header agree", batches: [][]moesif.Event{{withID}}, single: []moesif.Event{retry}, want: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, server.Config{})
			for _, b := range c.batches {
				if code, out := e.post("/v1/events/batch", marshal(t, b)); code != 200 {
					t.Fatalf("batch: %d %v", code, out)
				}
			}
			for _, ev := range c.single {
				if code, out := e.post("/v1/events", marshal(t, ev)); code != 200 {
					t.Fatalf("single: %d %v", code, out)
				}
			}
			rows, _ := e.counts()
			if rows != c.want {
				t.Errorf("stored %d rows, want %d distinct events", rows, c.want)
			}
		})
	}
}

func TestIdempotentAcrossRestartAndEntryPoints(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	a, err := apps.Create(dir, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	gen := workload.New(5, time.Hour)
	gen.IDs = true
	batch := gen.Batch(30)

	open := func() (*duckdb.Store, *server.Server) {
		st, err := duckdb.Open(ctx, filepath.Join(dir, "events.duckdb"), duckdb.Options{})
		if err != nil {
			t.Fatal(err)
		}
		reg, _ := apps.Open(dir)
		return st, server.New(server.Config{Store: st, Apps: reg, Scrubber: scrub.New(nil, nil, -1)})
	}
	st, srv := open()
	events := make([]apimeter.Event, len(batch))
	for i := range batch {
		if events[i], err = batch[i].ToEvent(a.Org, a.Env, i); err != nil {
			t.Fatal(err)
		}
	}
	// First through the in-process entry point (gateway, consumer).
	if res, err := srv.Ingest(ctx, events[:20]); err != nil || len(res.Stored) != 20 {
		t.Fatalf("Ingest: %v, %d stored", err, len(res.Stored))
	}
	st.Close()

	// After a restart, the whole batch again through HTTP.
	st, srv = open()
	defer st.Close()
	e := &env{t: t, dir: dir, store: st, appID: a.ID}
	e.http = httptest.NewServer(srv)
	defer e.http.Close()
	code, out := e.post("/v1/events/batch", marshal(t, batch))
	if code != 200 || out["stored"] != float64(10) || out["duplicates"] != float64(20) {
		t.Fatalf("replay after restart: %d %v, want 10 stored and 20 duplicates", code, out)
	}
	if rows, _ := e.counts(); rows != 30 {
		t.Errorf("%d rows, want 30", rows)
	}
}

func TestDedupeHorizon(t *testing.T) {
	// Past the horizon an id is forgotten: the event is stored again. The
	// horizon is counted from ingest time.
	dir := t.TempDir()
	ctx := context.Background()
	st, err := duckdb.Open(ctx, filepath.Join(dir, "events.duckdb"), duckdb.Options{DedupeHorizon: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ev := apimeter.Event{ID: "x1", Org: "o", Env: "e", RequestTime: time.Now(), ResponseTime: time.Now(), Weight: 1, RequestSize: -1, ResponseSize: -1}
	if res, err := st.Append(ctx, []apimeter.Event{ev}); err != nil || len(res.Stored) != 1 {
		t.Fatalf("first append: %v %+v", err, res)
	}
	if res, err := st.Append(ctx, []apimeter.Event{ev}); err != nil || res.Duplicates != 1 {
		t.Fatalf("second append within the sweep interval: %v %+v, want a duplicate", err, res)
	}
	st.Close()
	st2, err := duckdb.Open(ctx, filepath.Join(dir, "events.duckdb"), duckdb.Options{DedupeHorizon: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if res, err := st2.Append(ctx, []apimeter.Event{ev}); err != nil || len(res.Stored) != 1 {
		t.Fatalf("append after restart past the horizon: %v %+v, want stored again", err, res)
	}
}

func TestWeights(t *testing.T) {
	e := newEnv(t, server.Config{})
	var batch []string
	for i, w := range []int{1, 10, 100} {
		batch = append(batch, fmt.Sprintf(`{"event_id":"w%d","weight":%d,"request":{"time":"2026-11-02T09:00:0%dZ","uri":"/a","verb":"GET"},"response":{"time":"2026-11-02T09:00:0%d.%03dZ","status":200}}`, i, w, i, i, (i+1)*100))
	}
	body := "[" + batch[0] + "," + batch[1] + "," + batch[2] + "]"
	if code, out := e.post("/v1/events/batch", []byte(body)); code != 200 {
		t.Fatalf("%d %v", code, out)
	}
	rows, weight := e.counts()
	if rows != 3 || weight != 111 {
		t.Errorf("rows %d weight %d, want 3 rows standing for 111 calls", rows, weight)
	}
	// Java's SDK sends weight 0 for "not set": counted as 1.
	if code, out := e.post("/v1/events/batch", []byte(`[{"event_id":"wzero","weight":0,"request":{"time":"2026-11-02T09:00:00Z","uri":"/a","verb":"GET"},"response":{"status":200}}]`)); code != 200 {
		t.Fatalf("%d %v", code, out)
	}
	if _, weight := e.counts(); weight != 112 {
		t.Errorf("weight after a weight-0 event %d, want 112", weight)
	}
}

// TestIdenticalEventsInOneBatchAreCountedEach: three identical calls
// without ids in one batch are three calls (the 2nd and 3rd get their own
// derived ids), and resending the batch stores nothing new.
func TestIdenticalEventsInOneBatchAreCountedEach(t *testing.T) {
	ev := moesif.Event{
		Request:  moesif.Request{Time: time.Now().UTC().Format(time.RFC3339Nano), URI: "/orders", Verb: "GET"},
		Response: &moesif.Response{Status: 200},
	}
	batch := marshal(t, []moesif.Event{ev, ev, ev})
	e := newEnv(t, server.Config{})
	for i := 0; i < 2; i++ {
		if code, out := e.post("/v1/events/batch", batch); code != 200 {
			t.Fatalf("batch %d: %d %v", i, code, out)
		}
	}
	if rows, _ := e.counts(); rows != 3 {
		t.Errorf("stored %d rows for three identical calls sent twice, want 3", rows)
	}
	// The single-event endpoint gives the first occurrence's id: a retry
	// of it is still recognised.
	if code, out := e.post("/v1/events", marshal(t, ev)); code != 200 {
		t.Fatalf("single: %d %v", code, out)
	}
	if rows, _ := e.counts(); rows != 3 {
		t.Errorf("stored %d rows after resending the first as a single event, want 3", rows)
	}
}
