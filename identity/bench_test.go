package identity_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/store/duckdb"
)

const benchBatch = 100

// benchEvents is a realistic mix: 80% calls with a known API key, 15% with
// a JWT (not in the alias table), 5% with an unknown key.
func benchEvents(b *testing.B, keys []string, secret []byte) []apimeter.Event {
	tokens := make([]string, 20)
	for i := range tokens {
		tokens[i] = token(b, secret, jwt.MapClaims{"sub": fmt.Sprintf("jwt-user-%d", i)})
	}
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	evs := make([]apimeter.Event, benchBatch)
	for i := range evs {
		e := &evs[i]
		e.Org, e.Env, e.RequestTime, e.Path, e.Weight = "acme", "prod", at, "/accounts/a1/items", 1
		switch {
		case i%20 < 16:
			e.RequestHeaders = apimeter.Headers{{Name: "X-Api-Key", Value: keys[(i*7919)%len(keys)]}}
		case i%20 < 19:
			e.RequestHeaders = apimeter.Headers{{Name: "Authorization", Value: "Bearer " + tokens[i%len(tokens)]}}
		default:
			e.RequestHeaders = apimeter.Headers{{Name: "X-Api-Key", Value: fmt.Sprintf("unknown-%d", i)}}
		}
	}
	return evs
}

func resetIDs(evs []apimeter.Event) {
	for i := range evs {
		evs[i].UserID, evs[i].CompanyID, evs[i].APIKeyID = "", "", ""
	}
}

func fillAliases(b *testing.B, al identity.Aliases, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("ak_live_%08d_bench", i)
		if err := al.PutAlias(context.Background(), identity.Alias{Org: "acme", Env: "prod", KeyHash: scrub.KeyHash(keys[i]),
			UserID: fmt.Sprintf("user-%d", i/3), CompanyID: "co-1"}); err != nil {
			b.Fatal(err)
		}
	}
	return keys
}

// mapLookup is the floor: a bare Go map from raw key to user, read for
// each event of the same batch.
func mapLookup(b *testing.B, keys []string, evs []apimeter.Event) {
	m := make(map[string]string, len(keys))
	for i, k := range keys {
		m[k] = fmt.Sprintf("user-%d", i/3)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resetIDs(evs)
		for j := range evs {
			evs[j].UserID = m[evs[j].RequestHeaders[0].Value]
		}
	}
}

// BenchmarkIdentify measures identity resolution per event (batches of
// 100, 1000 aliases) on the embedded backend and on Redis (one pipelined
// round trip per batch, and, for contrast, one per event), each reported
// as ns/event and as a multiple of a bare map lookup measured in the same
// run.
func BenchmarkIdentify(b *testing.B) {
	secret := []byte("bench-secret-bench-secret-bench-secret")
	st, err := duckdb.Open(context.Background(), filepath.Join(b.TempDir(), "events.duckdb"), duckdb.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	emb, err := identity.OpenEmbedded(context.Background(), st.DB(), identity.EmbeddedOptions{})
	if err != nil {
		b.Fatal(err)
	}
	keys := fillAliases(b, emb, 1000)
	evs := benchEvents(b, keys, secret)
	var floorNs float64 // set by the map sub-benchmark, which runs first

	run := func(b *testing.B, al identity.Aliases, batch int) {
		res := identity.NewResolver(identity.Config{Aliases: al, JWT: identity.NewJWT(identity.JWTOptions{HMACSecrets: [][]byte{secret}})})
		ctx := context.Background()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			resetIDs(evs)
			for j := 0; j < len(evs); j += batch {
				if err := res.Identify(ctx, evs[j:j+batch]); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StopTimer()
		if evs[0].UserID == "" {
			b.Fatal("first event not identified")
		}
		ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N*len(evs))
		b.ReportMetric(ns, "ns/event")
		if floorNs > 0 {
			b.ReportMetric(ns/floorNs, "x-map")
		}
	}
	b.Run("map", func(b *testing.B) {
		mapLookup(b, keys, evs)
		floorNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N*len(evs))
		b.ReportMetric(floorNs, "ns/event")
		b.ReportMetric(1, "x-map")
	})
	b.Run("map+sha256", func(b *testing.B) {
		// The same map keyed by the keys' SHA-256, as the alias table must
		// be: the part of the cost that storing only hashes makes inherent.
		m := make(map[string]string, len(keys))
		for i, k := range keys {
			m[scrub.KeyHash(k)] = fmt.Sprintf("user-%d", i/3)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			resetIDs(evs)
			for j := range evs {
				evs[j].UserID = m[scrub.KeyHash(evs[j].RequestHeaders[0].Value)]
			}
		}
		ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N*len(evs))
		b.ReportMetric(ns, "ns/event")
		b.ReportMetric(ns/floorNs, "x-map")
	})
	b.Run("embedded", func(b *testing.B) { run(b, emb, benchBatch) })
	rc := startRedis(b)
	r := identity.NewRedis(rc, identity.RedisOptions{})
	fillAliases(b, r, 1000)
	b.Run("redis-pipelined", func(b *testing.B) { run(b, r, benchBatch) })
	b.Run("redis-per-event", func(b *testing.B) { run(b, r, 1) })
}

// BenchmarkCount measures the usage sink per stored event (batches of 100).
func BenchmarkCount(b *testing.B) {
	st, err := duckdb.Open(context.Background(), filepath.Join(b.TempDir(), "events.duckdb"), duckdb.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	emb, err := identity.OpenEmbedded(context.Background(), st.DB(), identity.EmbeddedOptions{})
	if err != nil {
		b.Fatal(err)
	}
	evs := benchEvents(b, []string{"k"}, []byte("x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x-x"))
	ptrs := make([]*apimeter.Event, len(evs))
	for i := range evs {
		evs[i].UserID = fmt.Sprintf("user-%d", i%30)
		evs[i].APIKeyID = fmt.Sprintf("fp_%d", i%50)
		ptrs[i] = &evs[i]
	}
	run := func(b *testing.B, c identity.Counters) {
		m := &identity.Meter{Counters: c}
		for i := 0; i < b.N; i++ {
			if err := m.Stored(context.Background(), ptrs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ptrs)), "ns/event")
	}
	b.Run("embedded", func(b *testing.B) { run(b, emb) })
	rc := startRedis(b)
	b.Run("redis-pipelined", func(b *testing.B) { run(b, identity.NewRedis(rc, identity.RedisOptions{})) })
}
