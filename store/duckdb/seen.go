package duckdb

import (
	"cmp"
	"context"
	"database/sql"
	"math/bits"
	"slices"
	"time"

	"github.com/zeebo/xxh3"
)

// DefaultDedupeMemory is the most memory the dedupe set may hold unless
// configured otherwise (128 MB, as --dedupe-memory reads it): a table of
// 94 MB when grown in full, for 5.2 million ids. Ids it cannot hold are
// looked up in the events table instead (see Store.onDisk).
const DefaultDedupeMemory = 128_000_000

// minDedupeSlots is the size the set starts with (1 MiB), or a quarter of
// its bound when that is less.
const minDedupeSlots = 1 << 16

// A slot holds one key of the set: the 64 low bits of the key in lo; in hi
// the minute the key was added (unix minutes, 28 bits: until the year
// 2480) above the next 36 bits of the key. hi is never 0 for a key, so a
// zero hi marks an empty slot.
//
// Keys are compared on those 100 bits. Two different (org, env, id) are
// taken for one when their 100 bits agree, so that a new event would be
// answered as a duplicate and not stored. With a hash seeded at random when
// the store opens (Store.key), a sender cannot aim at that; by chance,
// each lookup among n remembered keys errs with probability n/2^100: for
// 10 million ids, 8e-24, so that a collector taking 100,000 events a second
// for a century (3e14 lookups) would err with probability about 2.5e-9.
type slot struct{ lo, hi uint64 }

const (
	keyBits = 36 // of hi; the minute takes the other 28
	keyMask = 1<<keyBits - 1
)

// minuteOf is the set's time unit: unix minutes.
func minuteOf(t time.Time) int32 { return int32(t.Unix() / 60) }

// seenSet is the dedupe set: the keys of the events ingested within the
// horizon, each with the minute it was added, in one open-addressing table
// (linear probing) of 16-byte slots. It never holds more than its bound in
// bytes, counting the old table while it grows; when it is full, Reserve
// forgets its oldest minutes, and below says from which minute on it still
// holds every key added. Only the writer goroutine touches it.
type seenSet struct {
	slots []slot
	n     int // keys held
	// maxSlots is the bound: the table and, while growing, the one it
	// replaces never have more slots together.
	maxSlots int
	// perMinute counts the keys held by the minute they were added.
	perMinute map[int32]int
	// below: keys added before this minute may have been forgotten to keep
	// to the bound (0: none was).
	below int32
	// peak is the most bytes held at once, growing included.
	peak int64
}

// newSeenSet returns an empty set that holds at most maxBytes.
func newSeenSet(maxBytes int64) *seenSet {
	maxSlots := max(int(maxBytes/16), 16)
	n := min(minDedupeSlots, maxSlots/4)
	return &seenSet{
		slots:     make([]slot, n),
		maxSlots:  maxSlots,
		perMinute: map[int32]int{},
		peak:      int64(n) * 16,
	}
}

// Len is the number of keys held.
func (s *seenSet) Len() int { return s.n }

// Bytes is the memory held by the table.
func (s *seenSet) Bytes() int64 { return int64(len(s.slots)) * 16 }

// home is the first slot probed for lo: lo scaled to the table's length,
// which need not be a power of two.
func home(lo uint64, n int) int {
	hi, _ := bits.Mul64(lo, uint64(n))
	return int(hi)
}

// find returns the slot holding k, or the empty slot where the probe for k
// ended, and whether k was found.
func (s *seenSet) find(k xxh3.Uint128) (int, bool) {
	hi := k.Hi & keyMask
	n := len(s.slots)
	for i := home(k.Lo, n); ; {
		sl := &s.slots[i]
		if sl.hi == 0 {
			return i, false
		}
		if sl.lo == k.Lo && sl.hi&keyMask == hi {
			return i, true
		}
		if i++; i == n {
			i = 0
		}
	}
}

// Has reports whether the set holds k.
func (s *seenSet) Has(k xxh3.Uint128) bool {
	_, ok := s.find(k)
	return ok
}

// Add adds k, added at minute (> 0); a key already held takes the new
// minute. Add never forgets a key: when the set is full at its bound, k
// is not added, and below moves past minute to say so (Reserve makes room
// beforehand).
func (s *seenSet) Add(k xxh3.Uint128, minute int32) {
	i, ok := s.find(k)
	if ok {
		s.count(int32(s.slots[i].hi>>keyBits), -1)
		s.slots[i].hi = uint64(minute)<<keyBits | k.Hi&keyMask
		s.count(minute, 1)
		return
	}
	if s.n+1 > maxLoad(len(s.slots)) {
		if !s.grow() {
			s.below = max(s.below, minute+1)
			return
		}
		i, _ = s.find(k)
	}
	s.slots[i] = slot{lo: k.Lo, hi: uint64(minute)<<keyBits | k.Hi&keyMask}
	s.n++
	s.count(minute, 1)
}

func (s *seenSet) count(minute int32, d int) {
	if c := s.perMinute[minute] + d; c > 0 {
		s.perMinute[minute] = c
	} else {
		delete(s.perMinute, minute)
	}
}

// maxLoad is how many keys a table of n slots takes: 7/8 full, linear
// probes stay short.
func maxLoad(n int) int { return n - n/8 }

// Reserve makes room for n more keys: it grows the table as far as needed
// and the bound allows, then, if that is not enough, forgets the oldest
// minutes until at most 3/4 of the table (less if n needs it) is full, so
// that forgetting (a pass over the table) is rare. The writer reserves
// room for a group's keys before it looks any up, so that no key it found
// is forgotten before the group is added.
func (s *seenSet) Reserve(n int) {
	for s.n+n > maxLoad(len(s.slots)) {
		if !s.grow() {
			break
		}
	}
	if s.n+n <= maxLoad(len(s.slots)) {
		return
	}
	keep := max(0, min(maxLoad(len(s.slots))*3/4, maxLoad(len(s.slots))-n))
	cut := s.cutoff(keep)
	s.below = max(s.below, cut)
	s.Forget(cut)
}

// grow moves the keys to a larger table if the bound allows.
func (s *seenSet) grow() bool {
	next := s.nextSize(len(s.slots))
	if next <= len(s.slots) {
		return false
	}
	s.rehash(next)
	return true
}

// nextSize is the size the table grows to from cur slots: twice cur while
// that leaves room to double once more, then the most the bound allows
// beside the table it replaces (2/3 to 5/6 of the bound).
func (s *seenSet) nextSize(cur int) int {
	if 6*cur <= s.maxSlots {
		return 2 * cur
	}
	return s.maxSlots - cur
}

// cutoff is the earliest minute from which on the set holds at most keep
// keys.
func (s *seenSet) cutoff(keep int) int32 {
	minutes := make([]int32, 0, len(s.perMinute))
	for m := range s.perMinute {
		minutes = append(minutes, m)
	}
	slices.SortFunc(minutes, func(a, b int32) int { return cmp.Compare(b, a) }) // newest first
	held := 0
	for i, m := range minutes {
		held += s.perMinute[m]
		if held > keep {
			if i == 0 {
				return m + 1 // one minute alone is over: forget it too
			}
			return minutes[i-1]
		}
	}
	if len(minutes) == 0 {
		return 0
	}
	return minutes[len(minutes)-1]
}

// room is how many keys the set takes at its bound without forgetting
// any: 3/4 of its largest table, the fill Reserve leaves.
func (s *seenSet) room() int {
	cur := len(s.slots)
	for next := s.nextSize(cur); next > cur; next = s.nextSize(cur) {
		cur = next
	}
	return maxLoad(cur) * 3 / 4
}

// rehash moves the keys to a table of n slots.
func (s *seenSet) rehash(n int) {
	old := s.slots
	s.slots = make([]slot, n)
	s.peak = max(s.peak, int64(len(old)+n)*16)
	for _, sl := range old {
		if sl.hi == 0 {
			continue
		}
		i := home(sl.lo, n)
		for s.slots[i].hi != 0 {
			if i++; i == n {
				i = 0
			}
		}
		s.slots[i] = sl
	}
}

// Remove forgets k (its commit failed).
func (s *seenSet) Remove(k xxh3.Uint128) {
	i, ok := s.find(k)
	if !ok {
		return
	}
	s.count(int32(s.slots[i].hi>>keyBits), -1)
	s.n--
	// Backward-shift deletion: move up every later key of the run whose
	// probe would otherwise cross the emptied slot.
	n := len(s.slots)
	for j := i; ; {
		if j++; j == n {
			j = 0
		}
		sl := s.slots[j]
		if sl.hi == 0 {
			break
		}
		h := home(sl.lo, n)
		// Move sl to i unless its home lies cyclically in (i, j].
		if i <= j {
			if i < h && h <= j {
				continue
			}
		} else if i < h || h <= j {
			continue
		}
		s.slots[i] = sl
		i = j
	}
	s.slots[i] = slot{}
}

// Forget drops every key added before minute, in one pass over the table.
func (s *seenSet) Forget(minute int32) {
	dropped := 0
	for m, c := range s.perMinute {
		if m < minute {
			dropped += c
			delete(s.perMinute, m)
		}
	}
	if dropped == 0 {
		return
	}
	limit := uint64(minute) << keyBits
	for i := range s.slots {
		if hi := s.slots[i].hi; hi != 0 && hi < limit {
			s.slots[i] = slot{}
		}
	}
	s.n -= dropped
	// Put back every remaining key whose probe now crosses an emptied
	// slot: going once round the table from an empty slot, take each key
	// out and insert it again; it lands at or before where it was.
	n := len(s.slots)
	start := 0
	for s.slots[start].hi != 0 {
		start++
	}
	for k := 1; k <= n; k++ {
		j := (start + k) % n
		sl := s.slots[j]
		if sl.hi == 0 {
			continue
		}
		s.slots[j] = slot{}
		i := home(sl.lo, n)
		for s.slots[i].hi != 0 {
			if i++; i == n {
				i = 0
			}
		}
		s.slots[i] = sl
	}
}

// seenSource is a table a dedupe set is loaded from (the events, the usage
// events).
type seenSource struct {
	// counts selects (minute, rows) of the rows ingested from its
	// argument on, the newest minute first.
	counts string
	// keys selects the key columns and the minute of the rows ingested
	// from its argument on.
	keys string
	// arg is the queries' argument for a time.
	arg func(time.Time) any
	// scan reads a row of keys into its key and minute.
	scan func(*sql.Rows) (xxh3.Uint128, int32, error)
}

// load fills s from src with the keys of the rows ingested since since:
// those of the newest minutes, as many as s has room for (room); below is
// the first minute of which s holds them all, older ones are looked up in
// the table.
func (s *seenSet) load(ctx context.Context, db *sql.DB, since time.Time, src seenSource) error {
	rows, err := db.QueryContext(ctx, src.counts, src.arg(since))
	if err != nil {
		return err
	}
	room := s.room()
	cut, held := since, 0
	for rows.Next() {
		var m int32
		var n int
		if err := rows.Scan(&m, &n); err != nil {
			rows.Close()
			return err
		}
		if held+n > room {
			s.below = m + 1
			cut = minuteTime(m + 1)
			break
		}
		held += n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = db.QueryContext(ctx, src.keys, src.arg(cut))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		k, m, err := src.scan(rows)
		if err != nil {
			return err
		}
		s.Add(k, m)
	}
	return rows.Err()
}
