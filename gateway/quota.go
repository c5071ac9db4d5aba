package gateway

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/internal/breaker"
)

// Window is one quota's counter for one subject in one window: Take counts
// a call against it unless that would pass Limit.
type Window struct {
	// Key names the counter: quota name, subject and window start.
	Key   string
	Limit int64
	// End is when the window closes and its counter starts again at 0.
	End time.Time
}

// Counter keeps quota counters. Take admits a call when every window is
// under its limit and then counts it in all of them, atomically; when one
// is full it counts nothing and returns that window's index (else -1).
// Implementations must be safe for concurrent use.
type Counter interface {
	Take(ctx context.Context, now time.Time, ws []Window) (blocked int, err error)
}

// MemoryCounter is the embedded Counter: in-process, no round trip per
// call. Counters of closed windows are dropped a minute at a time, so
// memory follows the subjects active in the current windows.
type MemoryCounter struct {
	mu        sync.Mutex
	slots     map[string]*slot
	nextSweep time.Time
}

type slot struct {
	n   int64
	end time.Time
}

// NewMemoryCounter returns an empty MemoryCounter.
func NewMemoryCounter() *MemoryCounter { return &MemoryCounter{slots: map[string]*slot{}} }

// Take implements Counter.
func (m *MemoryCounter) Take(_ context.Context, now time.Time, ws []Window) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.After(m.nextSweep) {
		for k, s := range m.slots {
			if !now.Before(s.end) {
				delete(m.slots, k)
			}
		}
		m.nextSweep = now.Add(time.Minute)
	}
	for i, w := range ws {
		var n int64
		if s := m.slots[w.Key]; s != nil && now.Before(s.end) {
			n = s.n
		}
		if n+1 > w.Limit {
			return i, nil
		}
	}
	for _, w := range ws {
		s := m.slots[w.Key]
		if s == nil || !now.Before(s.end) {
			s = &slot{end: w.End}
			m.slots[w.Key] = s
		}
		s.n++
	}
	return -1, nil
}

// quotas holds a gateway's quota rules.
type quotas struct {
	rules   []Quota
	periods identity.Periods
	counter Counter
	// guard bounds the checks on a counter store across the network;
	// nil for the in-process one.
	guard *breaker.Breaker
}

// subjects are who a call is counted for.
type subjects struct {
	user, company, apiKey string
}

func (s *subjects) of(by string) string {
	switch by {
	case ByUser:
		return s.user
	case ByCompany:
		return s.company
	}
	return s.apiKey
}

// needs reports whether the rules for api count users and API keys (the
// company is found whenever there are company rules: events carry it).
func (q *quotas) needs(api string) (user, apiKey bool) {
	for i := range q.rules {
		r := &q.rules[i]
		if !r.appliesTo(api) {
			continue
		}
		switch r.By {
		case ByUser:
			user = true
		case ByAPIKey:
			apiKey = true
		}
	}
	return
}

func (r *Quota) appliesTo(api string) bool {
	if len(r.APIs) == 0 {
		return true
	}
	for _, a := range r.APIs {
		if a == api {
			return true
		}
	}
	return false
}

// window returns the start and end of r's window around now.
func (q *quotas) window(per string, now time.Time) (time.Time, time.Time) {
	switch per {
	case PerMinute:
		s := now.Truncate(time.Minute)
		return s, s.Add(time.Minute)
	case PerHour:
		s := now.Truncate(time.Hour)
		return s, s.Add(time.Hour)
	case PerDay:
		loc := q.periods.Location
		if loc == nil {
			loc = time.UTC
		}
		t := now.In(loc)
		s := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
		return s, s.AddDate(0, 0, 1)
	}
	p := q.periods.Of(now)
	return p.Start, p.End
}

// verdict is a blocked call's quota.
type verdict struct {
	quota      *Quota
	subject    string
	limit      int64
	retryAfter time.Duration
}

// check counts a call of api by s against the quotas that apply, and
// returns the one it is over, or nil. Keys carry the window start, so a
// counter left from a past window is never read as the current one.
func (q *quotas) check(ctx context.Context, api string, s *subjects, now time.Time) (*verdict, error) {
	var buf [4]Window
	ws := buf[:0]
	var idx [4]int
	ix := idx[:0]
	for i := range q.rules {
		r := &q.rules[i]
		id := s.of(r.By)
		if id == "" || !r.appliesTo(api) {
			continue
		}
		limit := r.Limit
		if n, ok := r.Overrides[id]; ok {
			limit = n
		}
		start, end := q.window(r.Per, now)
		ws = append(ws, Window{Key: r.Name + ":" + id + ":" + strconv.FormatInt(start.Unix(), 10), Limit: limit, End: end})
		ix = append(ix, i)
	}
	if len(ws) == 0 {
		return nil, nil
	}
	var blocked int
	var err error
	if q.guard == nil {
		blocked, err = q.counter.Take(ctx, now, ws)
	} else {
		// The call may outlive the deadline (Detach): it writes only
		// its own result, read only when it came in time.
		var res int
		err = q.guard.Do(ctx, func(ctx context.Context) error {
			n, err := q.counter.Take(ctx, now, ws)
			res = n
			return err
		})
		if err == nil {
			blocked = res
		}
	}
	if err != nil || blocked < 0 {
		return nil, err
	}
	r := &q.rules[ix[blocked]]
	return &verdict{quota: r, subject: s.of(r.By), limit: ws[blocked].Limit, retryAfter: ws[blocked].End.Sub(now)}, nil
}
