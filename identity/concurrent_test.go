package identity_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/apimeter/apimeter/apps"
)

// TestConcurrentIngestAgrees posts overlapping batches from several
// goroutines while aliases change; the counters must still equal the
// events table.
func TestConcurrentIngestAgrees(t *testing.T) {
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			open, _ := be.setup(t)
			dir := t.TempDir()
			a, err := apps.Create(dir, "acme", "prod")
			if err != nil {
				t.Fatal(err)
			}
			r := startRig(t, dir, a.ID, open)
			defer r.close()
			var wg sync.WaitGroup
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for b := 0; b < 5; b++ {
						var batch []map[string]any
						for i := 0; i < 40; i++ {
							n := (w*5+b)*20 + i // batches overlap by half
							key := fmt.Sprintf("ck_%d", n%7)
							batch = append(batch, call(fmt.Sprintf("c%d", n), fmt.Sprintf("2026-11-%02dT10:00:00.000Z", 1+n%28),
								"https://api.example/items", map[string]string{"X-Api-Key": key}, 200+300*(n%3/2), int64(1+n%4)))
						}
						r.post(batch)
					}
				}()
			}
			for i := 0; i < 7; i++ {
				r.do("PUT", "/v1/aliases", map[string]any{"org": "acme", "key": fmt.Sprintf("ck_%d", i), "user_id": fmt.Sprintf("u%d", i%3)}, nil)
			}
			wg.Wait()
			r.agree("after concurrent ingest", "2026-11")
		})
	}
}
