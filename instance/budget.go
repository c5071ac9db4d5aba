package instance

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/apimeter/apimeter/store/duckdb"
)

// Shares of --memory-budget: DuckDB's buffers and queries take half, the
// dedupe set a fifth (its table is the power of two that fits, so it may
// use less); the rest is for the Go heap, requests in flight and what
// DuckDB allocates outside its buffer manager. Measured in
// docs/performance.md (RSS while the 10 M benchmark runs).
const (
	// DefaultMemoryBudget is --memory-budget's default.
	DefaultMemoryBudget = "512MB"
	budgetDuckDBShare   = 0.5
	budgetDedupeShare   = 0.2
)

// memorySizes are DuckDB's memory limit (as DuckDB reads it) and the
// dedupe set's bound in bytes: the explicit flags when given, else their
// shares of the budget.
func (f Observability) memorySizes() (limit string, dedupe int64, err error) {
	size := f.MemoryBudget
	if size == "" {
		size = DefaultMemoryBudget // a Config built in code, not from flags
	}
	budget, err := duckdb.ParseSize(size)
	if err != nil {
		return "", 0, fmt.Errorf("--memory-budget %w", err)
	}
	if budget < 64e6 {
		return "", 0, fmt.Errorf("--memory-budget %q: must be at least 64MB", f.MemoryBudget)
	}
	limit = f.MemoryLimit
	if limit == "" {
		limit = strconv.FormatInt(int64(float64(budget)*budgetDuckDBShare/1e6), 10) + "MB"
	} else if _, err := duckdb.ParseSize(limit); err != nil {
		return "", 0, fmt.Errorf("--memory-limit %w", err)
	}
	if f.DedupeMemory == "" {
		dedupe = int64(float64(budget) * budgetDedupeShare)
	} else if dedupe, err = duckdb.ParseSize(f.DedupeMemory); err != nil {
		return "", 0, fmt.Errorf("--dedupe-memory %w", err)
	} else if dedupe < 1e6 {
		return "", 0, errors.New("--dedupe-memory " + strconv.Quote(f.DedupeMemory) + ": must be at least 1MB")
	}
	return limit, dedupe, nil
}
