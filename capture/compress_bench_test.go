package capture

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/scrub"
)

// jsonBody returns about n bytes of an order as a JSON API would answer
// it: short keys and values, a quote every few bytes, numbers, a
// non-ASCII word, all varying from call to call.
func jsonBody(r *rand.Rand, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"order_id":"ord_%016x","customer":{"name":"%s","email":"user%d@example.com","tier":"%s"},"items":[`,
		r.Uint64(), []string{"Ada Lovelace", "Grace Hopper", "Alan Turing", "Barbara Liskov"}[r.IntN(4)],
		r.IntN(100000), []string{"free", "pro", "enterprise"}[r.IntN(3)])
	for i := 0; b.Len() < n-60; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sku":"W-%05d","qty":%d,"price":%d.%02d,"desc":"%s"}`, r.IntN(99999), 1+r.IntN(9), r.IntN(500), r.IntN(100),
			[]string{"blue widget", "large gadget, boxed", "spare part", "gift card été", "cable 2m"}[r.IntN(5)])
	}
	fmt.Fprintf(&b, `],"created_at":"2026-11-24T10:%02d:%02d.%06dZ"}`, r.IntN(60), r.IntN(60), r.IntN(1e6))
	return b.String()
}

// batchOf returns the JSON of eventsOf(bodies).
func batchOf(bodies string) []byte { return appendBatch(nil, eventsOf(bodies)) }

// eventsOf returns a batch of 500 events like the load run's (the counting guide's
// call, with its headers) with 1 KiB bodies: the load run's repeated 'x',
// or JSON that differs in every event.
func eventsOf(bodies string) []apimeter.Event {
	r := rand.New(rand.NewPCG(1, 2))
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	x := strings.Repeat("x", 1024)
	evs := make([]apimeter.Event, 500)
	for i := range evs {
		req, resp := x, `{"my_message":"`+x[:1024-18]+`"}`
		if bodies == "json" {
			req, resp = jsonBody(r, 1024), jsonBody(r, 1024)
		}
		t := t0.Add(time.Duration(i) * 37 * time.Microsecond)
		id := newID()
		evs[i] = apimeter.Event{
			ID: id, Direction: apimeter.Incoming, APIName: "127.0.0.1", Route: "/accounts/{id}/message",
			RequestTime: t, ResponseTime: t.Add(time.Duration(r.IntN(900)) * time.Microsecond), Method: "POST",
			URI: fmt.Sprintf("http://127.0.0.1:40123/accounts/%d/message", 1000+r.IntN(8)), ClientIP: "127.0.0.1",
			RequestHeaders: apimeter.Headers{{Name: "User-Agent", Value: "Go-http-client/1.1"}, {Name: "Content-Length", Value: "1024"},
				{Name: "Authorization", Value: scrub.Fingerprint("token")}, {Name: "Content-Type", Value: "application/json"},
				{Name: moesif.TransactionIDHeader, Value: id}},
			RequestBody: apimeter.Body{Text: req}, Status: 200,
			ResponseHeaders: apimeter.Headers{{Name: "Content-Type", Value: "application/json"},
				{Name: moesif.TransactionIDHeader, Value: id}, {Name: "Content-Length", Value: "1024"}},
			ResponseBody: apimeter.Body{Text: resp}, UserID: "513", CompanyID: "1003", Weight: 1,
		}
	}
	return evs
}

// BenchmarkCompressionLevels compresses one batch of 500 events at the
// gzip levels HTTPSinkConfig.CompressionLevel accepts (and 0, stored, for
// reference: what gzip costs at the least), 32 KiB at a time as HTTPSink
// does. ns/event is CPU per event, gzB/event what goes on the wire, of
// rawB/event of JSON.
func BenchmarkCompressionLevels(b *testing.B) {
	for _, bodies := range []string{"x", "json"} {
		raw := batchOf(bodies)
		for _, level := range []int{gzip.NoCompression, gzip.BestSpeed, 2, 3, 6, gzip.HuffmanOnly} {
			b.Run(fmt.Sprintf("bodies=%s/level=%d", bodies, level), func(b *testing.B) {
				var gz bytesCounter
				w, err := gzip.NewWriterLevel(&gz, level)
				if err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					gz = 0
					w.Reset(&gz)
					for i := 0; i < len(raw); i += gzipChunk {
						w.Write(raw[i:min(len(raw), i+gzipChunk)])
					}
					w.Close()
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*500), "ns/event")
				b.ReportMetric(float64(len(raw))/500, "rawB/event")
				b.ReportMetric(float64(gz)/500, "gzB/event")
			})
		}
	}
}

// bytesCounter counts what is written to it.
type bytesCounter int

func (c *bytesCounter) Write(p []byte) (int, error) {
	*c += bytesCounter(len(p))
	return len(p), nil
}
