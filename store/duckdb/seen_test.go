package duckdb

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/zeebo/xxh3"
)

func randomKey(r *rand.Rand) xxh3.Uint128 { return xxh3.Uint128{Lo: r.Uint64(), Hi: r.Uint64()} }

// TestSeenSetBounded adds ten times as many keys as the bound has slots,
// a new minute every thousand keys: the bytes held (growing included)
// never pass the bound, and every key added since the minute the set says
// it still holds in full is found.
func TestSeenSetBounded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bound int64
	}{
		{"64 KiB", 64 << 10},
		{"1 MiB", 1 << 20},
		{"3 MB, not a power of two", 3_000_000},
		{"5 MiB", 5 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSeenSet(tc.bound)
			r := rand.New(rand.NewPCG(1, 2))
			n := 10 * int(tc.bound/16)
			keys := make([]xxh3.Uint128, n)
			minutes := make([]int32, n)
			for i := range keys {
				if i%500 == 0 {
					s.Reserve(500) // as the writer does for each group
				}
				keys[i], minutes[i] = randomKey(r), int32(1000+i/1000)
				s.Add(keys[i], minutes[i])
				if s.Bytes() > tc.bound || s.peak > tc.bound {
					t.Fatalf("after %d keys: %d bytes held, peak %d; want at most the bound %d", i+1, s.Bytes(), s.peak, tc.bound)
				}
			}
			if s.below == 0 {
				t.Fatalf("%d keys in %d bytes and nothing forgotten", n, s.Bytes())
			}
			held := 0
			for i, k := range keys {
				if minutes[i] >= s.below {
					held++
					if !s.Has(k) {
						t.Fatalf("key %d (minute %d) not held; the set holds every key since minute %d", i, minutes[i], s.below)
					}
				}
			}
			if held != s.Len() {
				t.Fatalf("set counts %d keys, %d added since minute %d", s.Len(), held, s.below)
			}
			// The set uses at least 2/3 of its bound, and keeps at least
			// half of what fits there.
			if 3*s.Bytes() < 2*tc.bound || 2*s.Len() < s.room() {
				t.Fatalf("only %d keys held in %d bytes at the bound %d, room for %d", s.Len(), s.Bytes(), tc.bound, s.room())
			}
			t.Logf("%d keys added: %d held in %d bytes (%.1f bytes per key), peak %d", n, s.Len(), s.Bytes(), float64(s.Bytes())/float64(s.Len()), s.peak)
		})
	}
}

// TestSeenSetCollisions fills runs of slots with keys of one home slot
// (same low 64 bits) that differ only in the high bits, removes and
// forgets some: the others stay found, the removed are gone.
func TestSeenSetCollisions(t *testing.T) {
	s := newSeenSet(1 << 20)
	var keys []xxh3.Uint128
	for lo := range uint64(3) {
		for hi := range uint64(50) {
			// Same Lo: the same home slot (and the last slot's home for
			// lo = max, so that the run wraps round the table).
			k := xxh3.Uint128{Lo: ^uint64(0) - lo, Hi: hi<<keyBits | hi + 1}
			keys = append(keys, k)
			s.Add(k, int32(10+hi%5))
		}
	}
	// Keys equal in the 100 bits compared are one key.
	s.Add(xxh3.Uint128{Lo: keys[0].Lo, Hi: keys[0].Hi | 1<<63}, 10)
	if s.Len() != len(keys) {
		t.Fatalf("%d keys held, want %d", s.Len(), len(keys))
	}
	for i := 0; i < len(keys); i += 3 {
		s.Remove(keys[i])
	}
	s.Forget(11) // the keys of minute 10
	for i, k := range keys {
		want := i%3 != 0 && (i%50)%5 != 0
		if got := s.Has(k); got != want {
			t.Fatalf("key %d (lo %x hi %x): held %v, want %v", i, k.Lo, k.Hi, got, want)
		}
	}
	if s.Has(xxh3.Uint128{Lo: keys[1].Lo, Hi: keys[1].Hi + 1<<20}) {
		t.Fatal("a key differing from a held one in the high bits was found")
	}
}

// BenchmarkSeenSet compares the set's lookup and insert with the Go map
// it replaces, at a million keys.
func BenchmarkSeenSet(b *testing.B) {
	const n = 1 << 20
	r := rand.New(rand.NewPCG(3, 4))
	keys := make([]xxh3.Uint128, n)
	for i := range keys {
		keys[i] = randomKey(r)
	}
	b.Run("map", func(b *testing.B) {
		for b.Loop() {
			m := map[xxh3.Uint128]int32{}
			for _, k := range keys {
				if _, ok := m[k]; !ok {
					m[k] = 1
				}
			}
		}
	})
	b.Run("set", func(b *testing.B) {
		for b.Loop() {
			s := newSeenSet(DefaultDedupeMemory)
			for _, k := range keys {
				if !s.Has(k) {
					s.Add(k, 1)
				}
			}
		}
	})
}

// BenchmarkSeenSetMemory reports the heap held per id by the Go map the
// set replaced and by the set (at its default bound), for 1 and 10
// million ids; one op is the whole fill.
//
//	go test ./store/duckdb -run XXX -bench SeenSetMemory -benchtime 1x
func BenchmarkSeenSetMemory(b *testing.B) {
	for _, n := range []int{1_000_000, 10_000_000} {
		r := rand.New(rand.NewPCG(5, 6))
		keys := make([]xxh3.Uint128, n)
		for i := range keys {
			keys[i] = randomKey(r)
		}
		heap := func() uint64 {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return ms.HeapAlloc
		}
		b.Run(fmt.Sprintf("map/%dM", n/1_000_000), func(b *testing.B) {
			for b.Loop() {
				before := heap()
				m := map[xxh3.Uint128]int32{}
				for _, k := range keys {
					m[k] = 1
				}
				b.ReportMetric(float64(heap()-before)/float64(n), "heap-B/id")
				runtime.KeepAlive(m)
			}
		})
		b.Run(fmt.Sprintf("set/%dM", n/1_000_000), func(b *testing.B) {
			for b.Loop() {
				before := heap()
				s := newSeenSet(DefaultDedupeMemory)
				for i, k := range keys {
					if i%500 == 0 {
						s.Reserve(500)
					}
					s.Add(k, 1)
				}
				b.ReportMetric(float64(heap()-before)/float64(n), "heap-B/id")
				b.ReportMetric(float64(s.Len()), "ids-held")
				b.ReportMetric(float64(s.Bytes())/(1<<20), "MiB")
				runtime.KeepAlive(s)
			}
		})
	}
}
