package identity_test

import (
	"testing"
	"time"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/internal/redistest"
	"github.com/apimeter/apimeter/store/duckdb"
)

// TestHungRedisRefusesBatchesAtOnce: with the alias table's Redis stopped
// (SIGSTOP: connections open, no answer), the collector answers each batch
// 503 (nothing acknowledged, the sender retries) and after a few lookups
// that time out stops asking Redis at all; once Redis answers again,
// batches are stored again.
func TestHungRedisRefusesBatchesAtOnce(t *testing.T) {
	rs := redistest.StartServer(t)
	dir := t.TempDir()
	a, err := apps.Create(dir, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	var b *identity.Redis
	r := startRig(t, dir, a.ID, func(*testing.T, *duckdb.Store) (identity.Aliases, identity.Counters) {
		b = identity.NewRedis(rs.Client, identity.RedisOptions{Prefix: "hung:"})
		return b, b
	})
	defer r.close()
	batch := func(id string) []map[string]any {
		return []map[string]any{call(id, "2026-11-02T00:00:00.000Z", "https://api.example/items", map[string]string{"X-Api-Key": "k"}, 200, 1)}
	}
	r.post(batch("before"))
	if err := rs.Pause(); err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		var res map[string]any
		if code := r.do("POST", "/v1/events/batch", batch("hung"), &res); code != 503 {
			t.Fatalf("batch %d with Redis stopped: %d %v, want 503", i, code, res)
		}
	}
	if !b.CircuitOpen() {
		t.Fatal("after 8 batches with Redis stopped the circuit is closed; want it open, batches refused without waiting on Redis")
	}
	if err := rs.Resume(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var res map[string]any
		if code := r.do("POST", "/v1/events/batch", batch("after"), &res); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("batches still refused a minute after Redis came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if b.CircuitOpen() {
		t.Fatal("a batch was stored but the circuit is still open")
	}
}
