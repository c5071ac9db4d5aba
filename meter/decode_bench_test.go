package meter

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"
)

func benchBatch(n int) []byte {
	type ev struct {
		SpecVersion string         `json:"specversion"`
		ID          string         `json:"id"`
		Source      string         `json:"source"`
		Type        string         `json:"type"`
		Subject     string         `json:"subject"`
		Time        string         `json:"time"`
		Data        map[string]any `json:"data"`
	}
	evs := make([]ev, n)
	for i := range evs {
		evs[i] = ev{"1.0", strconv.Itoa(i), "bench", "tokens", "customer-" + strconv.Itoa(i%500), "2026-11-10T10:00:00Z",
			map[string]any{"tokens": i % 1000, "model": "gpt-4", "user": "u" + strconv.Itoa(i%50)}}
	}
	b, _ := json.Marshal(evs)
	return b
}

// BenchmarkDecode decodes a batch of 500 usage events as the SDK sends
// them; ns/op is per batch.
func BenchmarkDecode(b *testing.B) {
	body := benchBatch(500)
	now := time.Now()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := Decode(ContentTypeBatch, body, "o", "e", now, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
