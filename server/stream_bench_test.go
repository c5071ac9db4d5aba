package server

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/moesif"
)

func benchEvents(n int) []*apimeter.Event {
	out := make([]*apimeter.Event, n)
	for i := range out {
		e := ev(fmt.Sprintf("ev-%d", i), "513", 200)
		e.RequestHeaders = apimeter.Headers{{Name: "Authorization", Value: "fp_0123456789abcdef"}, {Name: "User-Agent", Value: "curl/8.5.0"}}
		e.ResponseBody = apimeter.Body{Text: `{"my_object":{"my_message":"Hello World!"}}`}
		out[i] = e
	}
	return out
}

// BenchmarkStreamStored is what the stream adds to ingest per stored event
// (ns/op is per batch of 500): with no subscriber, with one whose buffer is
// always full (a stalled browser: every event is a counted drop), with one
// that reads as fast as it can (events it has no room for are dropped, not
// encoded: "delivered" is the share it got), beside the raw cost of
// encoding the events, which a delivered event cannot avoid.
func BenchmarkStreamStored(b *testing.B) {
	events := benchEvents(500)
	ctx := context.Background()
	b.Run("raw-encode", func(b *testing.B) {
		for b.Loop() {
			for _, e := range events {
				if _, err := json.Marshal(moesif.FromEvent(e)); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("no-subscriber", func(b *testing.B) {
		s := NewStream(StreamConfig{})
		for b.Loop() {
			s.Stored(ctx, events)
		}
	})
	b.Run("stalled-subscriber", func(b *testing.B) {
		s := NewStream(StreamConfig{Buffer: 1})
		sub, _ := s.subscribe(StreamFilter{Org: "acme", Env: "prod"})
		sub.ch <- nil // full from the start
		for b.Loop() {
			s.Stored(ctx, events)
		}
	})
	b.Run("reading-subscriber", func(b *testing.B) {
		s := NewStream(StreamConfig{Buffer: 1024})
		sub, _ := s.subscribe(StreamFilter{Org: "acme", Env: "prod"})
		done := make(chan struct{})
		go func() {
			for {
				select {
				case <-sub.ch:
				case <-done:
					return
				}
			}
		}()
		n := 0
		for b.Loop() {
			s.Stored(ctx, events)
			n += len(events)
		}
		close(done)
		b.ReportMetric(1-float64(sub.dropped.Load())/float64(n), "delivered")
		time.Sleep(time.Millisecond)
	})
}
