package instance

import "testing"

// TestMemorySizes checks the shares of --memory-budget and that the
// explicit flags win.
func TestMemorySizes(t *testing.T) {
	for _, c := range []struct {
		o      Observability
		limit  string
		dedupe int64
	}{
		{Observability{MemoryBudget: "512MB"}, "256MB", 102_400_000},
		{Observability{MemoryBudget: "1GB"}, "500MB", 200_000_000},
		{Observability{MemoryBudget: "512MB", MemoryLimit: "2GB", DedupeMemory: "64MB"}, "2GB", 64_000_000},
	} {
		limit, dedupe, err := c.o.memorySizes()
		if err != nil || limit != c.limit || dedupe != c.dedupe {
			t.Errorf("%+v: %q, %d, %v; want %q, %d", c.o, limit, dedupe, err, c.limit, c.dedupe)
		}
	}
}
