// Package storetest is the test suite every apimeter.Store passes: what
// Append promises (exactly once per (org, env, id), durable when answered,
// safe for concurrent use, idempotent across restarts), what Events returns
// and how profiles are kept. A store's own tests call Run with an opener.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
)

// Opener prepares an empty store for one test and returns the function
// that opens it; calling that function again after Close reopens the same
// data (a restart).
type Opener func(t *testing.T) func(t *testing.T) apimeter.Store

// Run runs the suite against the stores open gives.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open func(t *testing.T) apimeter.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"DuplicatesInAndAcrossBatches", testDuplicates},
		{"ConcurrentAppends", testConcurrent},
		{"IdempotentAcrossRestart", testRestart},
		{"EventFilters", testFilters},
		{"Profiles", testProfiles},
		{"OversizedRowReadable", testOversizedRow},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

var base = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

func event(i int) apimeter.Event {
	rt := base.Add(time.Duration(i)*time.Minute + 123456*time.Microsecond)
	e := apimeter.Event{
		ID: fmt.Sprintf("e%04d", i), Org: "acme", Env: "prod", Direction: apimeter.Incoming,
		APIName: "orders", APIVersion: "v2", TargetURL: "http://backend:8080",
		RequestTime: rt, ResponseTime: rt.Add(42500 * time.Microsecond),
		Method: "POST", URI: "https://api.example.com/orders/7?x=1", Path: "/orders/7", Route: "/orders/{id}", Query: "x=1",
		ClientIP: "10.0.0.9", UserAgent: "curl/8",
		RequestHeaders:  apimeter.Headers{{Name: "Content-Type", Value: "application/json"}},
		RequestBody:     apimeter.Body{Text: `{"n":1}`},
		RequestSize:     7,
		Status:          200 + i%3*100,
		ResponseHeaders: apimeter.Headers{{Name: "X-Id", Value: fmt.Sprint(i)}},
		ResponseBody:    apimeter.Body{Text: "AAEC", Base64: true, Truncated: true},
		ResponseSize:    -1,
		LatencyMs:       42.5, TargetLatencyMs: 40.25,
		UserID: fmt.Sprintf("u%d", i%4), CompanyID: fmt.Sprintf("c%d", i%2), APIKeyID: "fp_abc", SessionToken: "fp_s",
		Tags: "t1", Metadata: json.RawMessage(`{"plan":"pro"}`), Weight: int64(1 + i%2),
	}
	return e
}

func events(from, to int) []apimeter.Event {
	var out []apimeter.Event
	for i := from; i < to; i++ {
		out = append(out, event(i))
	}
	return out
}

func closeStore(t *testing.T, st apimeter.Store) {
	t.Helper()
	if err := st.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func appendOK(t *testing.T, st apimeter.Store, evs []apimeter.Event, stored, dups int) {
	t.Helper()
	res, err := st.Append(context.Background(), evs)
	if err != nil {
		t.Fatalf("append %d events: %v", len(evs), err)
	}
	if len(res.Stored) != stored || res.Duplicates != dups {
		t.Fatalf("append %d events: stored %d, duplicates %d; want %d and %d", len(evs), len(res.Stored), res.Duplicates, stored, dups)
	}
}

func all(t *testing.T, st apimeter.Store, f apimeter.EventFilter) []apimeter.Event {
	t.Helper()
	if f.Org == "" {
		f.Org, f.Env = "acme", "prod"
	}
	if f.Limit == 0 {
		f.Limit = 100000
	}
	got, err := st.Events(context.Background(), f)
	if err != nil {
		t.Fatalf("events %+v: %v", f, err)
	}
	return got
}

func testRoundTrip(t *testing.T, open func(t *testing.T) apimeter.Store) {
	st := open(t)
	defer closeStore(t, st)
	want := event(1)
	appendOK(t, st, []apimeter.Event{want}, 1, 0)
	got := all(t, st, apimeter.EventFilter{})
	if len(got) != 1 {
		t.Fatalf("events after one append: %d, want 1", len(got))
	}
	g := got[0]
	// Stores keep the request time to the microsecond and derive the
	// response time from the latency.
	if !g.RequestTime.Equal(want.RequestTime) || !g.ResponseTime.Equal(want.ResponseTime) {
		t.Errorf("times: got %v / %v, want %v / %v", g.RequestTime, g.ResponseTime, want.RequestTime, want.ResponseTime)
	}
	g.RequestTime, g.ResponseTime = want.RequestTime, want.ResponseTime
	if !reflect.DeepEqual(g, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", g, want)
	}
}

func testDuplicates(t *testing.T, open func(t *testing.T) apimeter.Store) {
	st := open(t)
	defer closeStore(t, st)
	batch := append(events(0, 10), event(3), event(4)) // two repeats in the batch
	appendOK(t, st, batch, 10, 2)
	appendOK(t, st, events(5, 15), 5, 5) // half seen before
	if n := len(all(t, st, apimeter.EventFilter{})); n != 15 {
		t.Fatalf("events stored: %d, want 15", n)
	}
	// The same id in another environment is another event.
	other := event(1)
	other.Env = "test"
	appendOK(t, st, []apimeter.Event{other}, 1, 0)
}

func testConcurrent(t *testing.T, open func(t *testing.T) apimeter.Store) {
	st := open(t)
	defer closeStore(t, st)
	const workers, batches, per = 8, 10, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	stored, dups := 0, 0
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for b := 0; b < batches; b++ {
				// Every batch overlaps the previous worker's: each id is sent twice.
				lo := ((w*batches+b)*per + per/2*(w%2)) % (workers * batches * per)
				evs := make([]apimeter.Event, per)
				for i := range evs {
					evs[i] = event((lo + i) % (workers * batches * per))
				}
				res, err := st.Append(context.Background(), evs)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				stored += len(res.Stored)
				dups += res.Duplicates
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent append: %v", err)
	}
	got := all(t, st, apimeter.EventFilter{})
	ids := map[string]bool{}
	for _, e := range got {
		if ids[e.ID] {
			t.Fatalf("event %s returned twice", e.ID)
		}
		ids[e.ID] = true
	}
	if stored != len(got) || stored+dups != workers*batches*per {
		t.Fatalf("stored %d + duplicates %d, events %d; want stored = events and a sum of %d", stored, dups, len(got), workers*batches*per)
	}
}

func testRestart(t *testing.T, open func(t *testing.T) apimeter.Store) {
	st := open(t)
	appendOK(t, st, events(0, 20), 20, 0)
	closeStore(t, st)
	st = open(t)
	defer closeStore(t, st)
	appendOK(t, st, events(10, 30), 10, 10)
	if n := len(all(t, st, apimeter.EventFilter{})); n != 30 {
		t.Fatalf("events after restart and resend: %d, want 30", n)
	}
}

func testFilters(t *testing.T, open func(t *testing.T) apimeter.Store) {
	st := open(t)
	defer closeStore(t, st)
	appendOK(t, st, events(0, 40), 40, 0)
	ids := func(evs []apimeter.Event) []string {
		out := []string{}
		for _, e := range evs {
			out = append(out, e.ID)
		}
		return out
	}
	cases := []struct {
		name string
		f    apimeter.EventFilter
		want []string
	}{
		{"newest first, limit", apimeter.EventFilter{Limit: 3}, []string{"e0039", "e0038", "e0037"}},
		{"user", apimeter.EventFilter{UserID: "u1", Limit: 3}, []string{"e0037", "e0033", "e0029"}},
		{"company", apimeter.EventFilter{CompanyID: "c0", Limit: 2}, []string{"e0038", "e0036"}},
		{"status", apimeter.EventFilter{Status: ptr(300), Limit: 2}, []string{"e0037", "e0034"}},
		{"errors", apimeter.EventFilter{Errors: true, Limit: 2}, []string{"e0038", "e0035"}},
		{"api and route", apimeter.EventFilter{APIName: "orders", Route: "/orders/{id}", Limit: 2}, []string{"e0039", "e0038"}},
		{"other api", apimeter.EventFilter{APIName: "payments"}, []string{}},
		{"other route", apimeter.EventFilter{Route: "/orders"}, []string{}},
		// From and To bound the request time to the microsecond: event 5 is
		// at 10:05:00.123456.
		{"from/to", apimeter.EventFilter{From: base.Add(5*time.Minute + 123456*time.Microsecond), To: base.Add(7*time.Minute + 123457*time.Microsecond)}, []string{"e0007", "e0006", "e0005"}},
		{"from after the event", apimeter.EventFilter{From: base.Add(5*time.Minute + 123457*time.Microsecond), To: base.Add(6*time.Minute + 123456*time.Microsecond)}, []string{}},
		{"other env", apimeter.EventFilter{Org: "acme", Env: "test"}, []string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := ids(all(t, st, tc.f)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("events %+v: got %v, want %v", tc.f, got, tc.want)
			}
		})
	}
}

func testProfiles(t *testing.T, open func(t *testing.T) apimeter.Store) {
	st := open(t)
	ctx := context.Background()
	if _, err := st.Profile(ctx, "acme", "prod", "user", "u1"); !errors.Is(err, apimeter.ErrNotFound) {
		t.Fatalf("missing profile: err %v, want ErrNotFound", err)
	}
	p1 := apimeter.Profile{Org: "acme", Env: "prod", Kind: "user", ID: "u1", CompanyID: "c1", ModifiedTime: base, Body: json.RawMessage(`{"name":"A"}`)}
	p2 := p1
	p2.CompanyID, p2.ModifiedTime, p2.Body = "c2", base.Add(time.Hour), json.RawMessage(`{"name":"B"}`)
	co := apimeter.Profile{Org: "acme", Env: "prod", Kind: "company", ID: "u1", ModifiedTime: base, Body: json.RawMessage(`{}`)}
	if err := st.PutProfiles(ctx, []apimeter.Profile{p1, co}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutProfiles(ctx, []apimeter.Profile{p2}); err != nil {
		t.Fatal(err)
	}
	check := func(st apimeter.Store) {
		t.Helper()
		got, err := st.Profile(ctx, "acme", "prod", "user", "u1")
		if err != nil {
			t.Fatal(err)
		}
		if got.CompanyID != "c2" || !got.ModifiedTime.Equal(p2.ModifiedTime) || string(got.Body) != `{"name":"B"}` {
			t.Errorf("profile after two writes: %+v, want the second", got)
		}
		if got, err := st.Profile(ctx, "acme", "prod", "company", "u1"); err != nil || string(got.Body) != `{}` {
			t.Errorf("company profile of the same id: %+v, %v", got, err)
		}
	}
	check(st)
	closeStore(t, st)
	st = open(t)
	defer closeStore(t, st)
	check(st)
}

func ptr[T any](v T) *T { return &v }

// testOversizedRow: a row no entry point stores any more (1,001 request
// headers, as the Kafka consumer once did) written straight into the
// store reads back, its first 1,000 headers and a mark, instead of failing
// every read of a page that holds it.
func testOversizedRow(t *testing.T, open func(t *testing.T) apimeter.Store) {
	st := open(t)
	defer closeStore(t, st)
	e := event(1)
	e.RequestHeaders = nil
	for i := range 1001 {
		e.RequestHeaders = append(e.RequestHeaders, apimeter.Header{Name: fmt.Sprintf("X-H%d", i), Value: "v"})
	}
	appendOK(t, st, []apimeter.Event{e, event(2)}, 2, 0)
	got := all(t, st, apimeter.EventFilter{Org: "acme", Env: "prod"})
	if len(got) != 2 {
		t.Fatalf("Events: %d events, want 2", len(got))
	}
	for _, g := range got {
		if g.ID != e.ID {
			continue
		}
		if n := len(g.RequestHeaders); n != 1000 {
			t.Errorf("oversized row read back with %d request headers, want 1000", n)
		}
		if !json.Valid(g.Metadata) || !strings.Contains(string(g.Metadata), "apimeter_unreadable") {
			t.Errorf("oversized row's metadata %s, want the apimeter_unreadable mark", g.Metadata)
		}
	}
}

// RetentionOpener opens an empty store that keeps events for retention;
// drop runs the store's retention pass as of now.
type RetentionOpener func(t *testing.T, retention time.Duration) (st apimeter.Store, drop func(now time.Time) error)

// RunRetention checks that --retention means the same on every store:
// with 90 days, a pass drops an event of 400 days ago and keeps those of
// 80 days and one day ago (the unit dropped at a time, a month on
// ClickHouse, a day on DuckDB, only decides when a day between 90 days
// and its unit's end goes).
func RunRetention(t *testing.T, open RetentionOpener) {
	st, drop := open(t, 90*24*time.Hour)
	defer closeStore(t, st)
	// The real clock: a store's own background pass, if it runs, then
	// drops what the pass below drops.
	now := time.Now().UTC()
	var evs []apimeter.Event
	for i, age := range []time.Duration{400 * 24 * time.Hour, 80 * 24 * time.Hour, 24 * time.Hour} {
		e := event(i)
		e.RequestTime = now.Add(-age)
		e.ResponseTime = e.RequestTime.Add(time.Millisecond)
		evs = append(evs, e)
	}
	appendOK(t, st, evs, len(evs), 0)
	if err := drop(now); err != nil {
		t.Fatalf("retention pass: %v", err)
	}
	got := all(t, st, apimeter.EventFilter{Org: "acme", Env: "prod"})
	ids := map[string]bool{}
	for _, e := range got {
		ids[e.ID] = true
	}
	if !reflect.DeepEqual(ids, map[string]bool{"e0001": true, "e0002": true}) {
		t.Errorf("after a retention pass of 90 days: events %v, want e0001 (80 days old) and e0002 (one day), not e0000 (400 days)", ids)
	}
}
