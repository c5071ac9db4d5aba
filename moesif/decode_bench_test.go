package moesif_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/workload"
)

// BenchmarkDecodeBatch measures decoding a 500-event collector batch, the
// fast decoder against encoding/json, per event.
//
//	go test . -run XXX -bench DecodeBatch
func BenchmarkDecodeBatch(b *testing.B) {
	gen := workload.New(1, time.Hour)
	body, _ := json.Marshal(gen.Batch(500))
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(body)) / 500)
		for i := 0; i < b.N; i += 500 {
			var ms []moesif.Event
			if err := json.Unmarshal(body, &ms); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(body)) / 500)
		for i := 0; i < b.N; i += 500 {
			if _, err := moesif.DecodeBatch(body, moesif.Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast+ToEvent+Scrub", func(b *testing.B) {
		b.SetBytes(int64(len(body)) / 500)
		scrubber := scrub.New(nil, nil, -1)
		for i := 0; i < b.N; i += 500 {
			ms, err := moesif.DecodeBatch(body, moesif.Limits{})
			if err != nil {
				b.Fatal(err)
			}
			for j := range ms {
				ev, err := ms[j].ToEvent("o", "e", j)
				if err != nil {
					b.Fatal(err)
				}
				scrubber.Scrub(&ev)
			}
		}
	})
}
