package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/httpmsg"
)

type nopIngester struct{}

func (nopIngester) Ingest(context.Context, []apimeter.Event) (apimeter.AppendResult, error) {
	return apimeter.AppendResult{}, nil
}

func testConsumer(t *testing.T, maxPending int) *Consumer {
	t.Helper()
	c, err := NewConsumer(ConsumerConfig{Topic: "t", Group: "g", Ingester: nopIngester{}, PairTTL: time.Minute, MaxPending: maxPending, Org: "o", Env: "e"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *Consumer) addHalf(t *testing.T, kind httpmsg.Kind, id string, part int32, offset int64, ts time.Time) {
	t.Helper()
	p := c.parts[part]
	s := &slot{offset: offset}
	p.queue = append(p.queue, s)
	p.next = offset + 1
	c.stats.Consumed++
	c.pending.add(&half{msg: httpmsg.Message{Kind: kind, ID: id, Method: "GET", Target: "/", Status: 200}, ts: ts, seq: c.stats.Consumed, at: c.now, partition: part, slot: s})
}

// TestExpireOnRecordTime: while the response partition is behind its
// listed end, a request old in wall-clock terms is not flagged, because its
// response may be in the backlog; once every partition has reached its end,
// it is.
func TestExpireOnRecordTime(t *testing.T) {
	c := testConsumer(t, 100)
	now := time.Now()
	old := now.Add(-10 * time.Minute)
	c.parts[0] = &partState{next: -1, hwm: -1, end: 10, endAt: now, committed: -1, seen: true, lastTS: now}
	c.parts[1] = &partState{next: -1, hwm: -1, end: 500, endAt: now, committed: -1, seen: true, lastTS: old.Add(30 * time.Second)}
	c.now = old // it arrived when it was written
	c.addHalf(t, httpmsg.Request, "r1", 0, 9, old)
	c.parts[1].next = 100 // 400 records behind, last one read 30 s after the request
	c.expire(now)
	if len(c.out) != 0 || c.pending.live != 1 {
		t.Fatalf("flagged while the other partition is behind: out %d, pending %d", len(c.out), c.pending.live)
	}
	if got := c.parts[0].commitOffset(); got != 9 {
		t.Fatalf("commit offset %d while the request waits, want 9", got)
	}
	c.parts[1].next = 500 // caught up: the clock is when the end was listed
	c.expire(now)
	if len(c.out) != 1 || c.out[0].Status != 0 || c.stats.OrphanRequests != 1 || c.pending.live != 0 {
		t.Fatalf("after catching up: out %+v, stats %+v", c.out, c.stats)
	}
	// Its offset is released only once the flagged call is stored.
	if got := c.parts[0].commitOffset(); got != 9 {
		t.Fatalf("commit offset %d before the store, want 9", got)
	}
	for _, s := range c.resolve { // as finish does once the batch is stored
		s.resolved = true
	}
	if got := c.parts[0].commitOffset(); got != 10 {
		t.Fatalf("commit offset %d after the store, want 10", got)
	}
}

// TestPendingBound: past MaxPending the oldest halves are stored alone,
// whatever their age.
func TestPendingBound(t *testing.T) {
	c := testConsumer(t, 10)
	now := time.Now()
	c.parts[0] = &partState{next: -1, hwm: -1, end: -1, committed: -1, seen: true, lastTS: now, assignedAt: now}
	for i := 0; i < 25; i++ {
		c.addHalf(t, httpmsg.Request, fmt.Sprint("r", i), 0, int64(i), now)
	}
	c.expire(now)
	if c.pending.live != 10 || len(c.out) != 15 || c.out[0].ID != "r0" || c.out[14].ID != "r14" {
		t.Fatalf("pending %d, flagged %d (first %q): want 10 pending and r0..r14 flagged", c.pending.live, len(c.out), c.out[0].ID)
	}
}

// TestReplayedRecordsStillPair: a replayed (or lagging) hub delivers a
// request whose timestamp is long past, with every partition caught up;
// record time alone would store it alone at once, and its response,
// arriving right after, alone too. Within the window in arrival order it
// waits and pairs; past the window (PairWindow records read after it, or
// PairTTL since it arrived) an orphan is still stored alone.
func TestReplayedRecordsStillPair(t *testing.T) {
	c, err := NewConsumer(ConsumerConfig{Topic: "t", Group: "g", Ingester: nopIngester{}, PairTTL: time.Minute, PairWindow: 5, Org: "o", Env: "e"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	hourAgo := now.Add(-time.Hour)
	c.parts[0] = &partState{next: -1, hwm: -1, end: 0, endAt: now, committed: -1, seen: true, lastTS: hourAgo}
	c.parts[1] = &partState{next: 0, hwm: -1, end: 0, endAt: now, committed: -1, seen: true, lastTS: hourAgo}
	c.now = now
	c.addHalf(t, httpmsg.Request, "call-1", 0, 0, hourAgo)
	c.addHalf(t, httpmsg.Request, "orphan", 0, 1, hourAgo)
	c.parts[0].end = 2
	c.expire(now)
	if len(c.out) != 0 || c.pending.live != 2 {
		t.Fatalf("replayed requests flagged on arrival: out %+v, pending %d; want both waiting", c.out, c.pending.live)
	}
	// The response arrives: paired by id, as handleAPIM pairs.
	if other := c.pending.take("call-1"); other == nil {
		t.Fatal("the replayed request was not waiting for its response")
	}
	c.stats.Paired++
	// Five more records read: the orphan is past the window.
	c.stats.Consumed += 5
	c.expire(now)
	if len(c.out) != 1 || c.out[0].ID != "orphan" || c.stats.OrphanRequests != 1 || c.stats.Paired != 1 {
		t.Fatalf("after the window: out %+v, stats %+v; want call-1 paired and the orphan stored alone", c.out, c.stats)
	}
}
