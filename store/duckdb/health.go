package duckdb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultMemoryLimit is DuckDB's memory limit unless configured otherwise.
// DuckDB's own default is 80% of the machine's RAM, which a collector that
// shares its machine with the API it measures should not take; past the
// limit DuckDB spills to a temporary directory beside the database file.
const DefaultMemoryLimit = "512MB"

// Health is what the store knows of its own state, for readiness and
// metrics.
type Health struct {
	// Queued counts batches waiting for the writer.
	Queued int
	// DedupeEntries counts the event ids remembered for idempotent ingest.
	DedupeEntries int
	// DedupeBytes is the memory the dedupe set holds, at most
	// Options.DedupeMemory.
	DedupeBytes int64
	// DedupeLookups counts the queries that looked ids up in the events
	// table because the dedupe set had no room for them.
	DedupeLookups int64
	// Commits and CommitFailures count group commits since Open.
	Commits, CommitFailures int64
	// LastError is the error of the last commit when it failed, nil when
	// the last commit succeeded (or none ran yet).
	LastError error
	// LastErrorAt is when the last commit failed, zero if never.
	LastErrorAt time.Time
}

// health is the committer's record of how commits went.
type health struct {
	mu          sync.Mutex
	commits     int64
	failures    int64
	lastErr     error
	lastErrAt   time.Time
	dedupe      int
	dedupeBytes int64
	lookups     int64
	commitHooks []func(took time.Duration, rows int, err error)
}

func (h *health) commitDone(took time.Duration, rows int, err error) {
	h.mu.Lock()
	h.commits++
	if err != nil {
		h.failures++
		h.lastErr, h.lastErrAt = err, time.Now()
	} else {
		h.lastErr = nil
	}
	hooks := h.commitHooks
	h.mu.Unlock()
	for _, f := range hooks {
		f(took, rows, err)
	}
}

func (h *health) setDedupe(n int, bytes int64) {
	h.mu.Lock()
	h.dedupe, h.dedupeBytes = n, bytes
	h.mu.Unlock()
}

func (h *health) diskCheck() {
	h.mu.Lock()
	h.lookups++
	h.mu.Unlock()
}

// Health reports the store's state.
func (s *Store) Health() Health {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	return Health{
		Queued:         s.q.Len(),
		DedupeEntries:  s.health.dedupe,
		DedupeBytes:    s.health.dedupeBytes,
		DedupeLookups:  s.health.lookups,
		Commits:        s.health.commits,
		CommitFailures: s.health.failures,
		LastError:      s.health.lastErr,
		LastErrorAt:    s.health.lastErrAt,
	}
}

// OnCommit calls f after every group commit with how long it took, the rows
// it wrote and its error. Set it before the first Append.
func (s *Store) OnCommit(f func(took time.Duration, rows int, err error)) {
	s.health.mu.Lock()
	s.health.commitHooks = append(s.health.commitHooks, f)
	s.health.mu.Unlock()
}

// Ready reports whether the store can take writes: the database answers
// and the last commit did not fail.
func (s *Store) Ready(ctx context.Context) error {
	select {
	case <-s.q.Stopped():
		return errors.New("store is closed")
	default:
	}
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	h := s.Health()
	if h.LastError != nil {
		return fmt.Errorf("last commit failed at %s: %w", h.LastErrorAt.UTC().Format(time.RFC3339), h.LastError)
	}
	return nil
}

// memoryLimitSetting renders the DuckDB setting for a limit such as
// "512MB", "2GiB" or "1.5GB"; it refuses anything else, so that a typo does
// not reach DuckDB as SQL.
func memoryLimitSetting(limit string) (string, error) {
	if limit == "" {
		limit = DefaultMemoryLimit
	}
	num, unit, ok := splitSize(limit)
	if !ok {
		return "", fmt.Errorf("memory limit %q: want a size such as 512MB or 2GiB", limit)
	}
	return fmt.Sprintf("SET memory_limit = '%s%s'", num, unit), nil
}

// sizeUnits are the units of a size, in bytes: KB to TB powers of 1000,
// KiB to TiB powers of 1024, as DuckDB reads its memory limit.
var sizeUnits = map[string]float64{
	"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
	"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40,
}

// splitSize splits a size such as "512MB" or "1.5 GiB" into its number and
// its unit (upper case), or reports that it is not one.
func splitSize(size string) (num, unit string, ok bool) {
	l := strings.TrimSpace(size)
	i := 0
	dot := false
	for i < len(l) && (l[i] >= '0' && l[i] <= '9' || l[i] == '.' && !dot) {
		dot = dot || l[i] == '.'
		i++
	}
	num, unit = l[:i], strings.ToUpper(strings.TrimSpace(l[i:]))
	_, ok = sizeUnits[unit]
	return num, unit, ok && num != "" && num != "."
}

// ParseSize reads a size such as "128MB", "2GiB" or "1.5GB" in bytes (the
// units of --memory-limit).
func ParseSize(size string) (int64, error) {
	num, unit, ok := splitSize(size)
	if !ok {
		return 0, fmt.Errorf("%q: want a size such as 128MB or 1GiB", size)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f*sizeUnits[unit] >= 1<<62 {
		return 0, fmt.Errorf("%q: want a size such as 128MB or 1GiB", size)
	}
	return int64(f * sizeUnits[unit]), nil
}
