package scrub_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/workload"
)

// orderJSON is a 1 KiB JSON body with no secret in it, the common case the
// body scrubbing must pass through cheaply.
func orderJSON() string {
	var b strings.Builder
	b.WriteString(`{"order_id":"ord_8f2a9c","customer":{"id":"cus_513","name":"Acme Co","email":"ops@acme.example"},"currency":"EUR","items":[`)
	for i := 0; b.Len() < 960; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sku":"SKU-%04d","qty":%d,"unit_price":%d.50,"title":"Widget number %d"}`, i, 1+i%4, 10+i, i)
	}
	b.WriteString(`],"note":"leave at the door"}`)
	return b.String()
}

// scrubEvents returns n realistic events after ToEvent, with 1 KiB JSON
// bodies when big is set.
func scrubEvents(b *testing.B, n int, big bool) []apimeter.Event {
	gen := workload.New(1, time.Hour)
	body, _ := json.Marshal(gen.Batch(n))
	ms, err := moesif.DecodeBatch(body, moesif.Limits{})
	if err != nil {
		b.Fatal(err)
	}
	evs := make([]apimeter.Event, len(ms))
	for i := range ms {
		if evs[i], err = ms[i].ToEvent("o", "e", i); err != nil {
			b.Fatal(err)
		}
		if big {
			evs[i].RequestBody = apimeter.Body{Text: orderJSON()}
			evs[i].ResponseBody = apimeter.Body{Text: orderJSON()}
		}
	}
	return evs
}

// BenchmarkScrub measures Scrub per event against copying the event (the
// copy every run needs, since Scrub rewrites in place): the ratio of the
// two is the scrubber's cost. Bodies are the workload's small JSON, or
// 1 KiB JSON bodies with no secret.
//
//	go test . -run XXX -bench 'Scrub$' -count 5
func BenchmarkScrub(b *testing.B) {
	for _, big := range []bool{false, true} {
		name := "small-bodies"
		if big {
			name = "1KiB-json-bodies"
		}
		evs := scrubEvents(b, 500, big)
		work := make([]apimeter.Event, len(evs))
		copyAll := func() {
			for i := range evs {
				work[i] = evs[i]
				work[i].RequestHeaders = append(work[i].RequestHeaders[:0], evs[i].RequestHeaders...)
				work[i].ResponseHeaders = append(work[i].ResponseHeaders[:0], evs[i].ResponseHeaders...)
			}
		}
		b.Run(name+"/copy", func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := processCPU()
			for i := 0; i < b.N; i += len(evs) {
				copyAll()
			}
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
		b.Run(name+"/copy+scrub", func(b *testing.B) {
			s := benchScrubber()
			b.ReportAllocs()
			cpu0 := processCPU()
			for i := 0; i < b.N; i += len(evs) {
				copyAll()
				for j := range work {
					s.Scrub(&work[j])
				}
			}
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkScrubJSON compares scrubbing a 1 KiB JSON body with no secret
// in it against reading it with encoding/json's scanner (json.Valid), the
// cheapest way the standard library reads JSON: the raw limit of a reader
// that must look at every field name.
//
//	go test . -run XXX -bench 'ScrubJSON$' -count 5
func BenchmarkScrubJSON(b *testing.B) {
	body := orderJSON()
	s := benchScrubber()
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"json.Valid", func() { json.Valid([]byte(body)) }},
		{"ScrubJSON", func() { s.ScrubJSON(body) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			cpu0 := processCPU()
			for b.Loop() {
				c.f()
			}
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
