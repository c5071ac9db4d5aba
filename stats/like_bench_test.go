package stats

import (
	"context"
	"testing"
)

// BenchmarkLikeRE2 is the cost of matching a like pattern holding both %
// and _ by RE2 (what the Metrics API renders on DuckDB) against DuckDB's
// own LIKE, on a pattern LIKE still finishes: 100,000 URIs of about 60
// characters, one count each. The floor is LIKE: it is what the query
// cost before, where it finished at all.
func BenchmarkLikeRE2(b *testing.B) {
	st := openStore(b, longURIEvents(100_000))
	db := st.DB()
	const pattern = "%/accounts/%/messages/_bc%"
	for _, c := range []struct{ name, sql, arg string }{
		{"duckdb-like", `SELECT count(*) FROM events WHERE uri LIKE ? ESCAPE '\'`, pattern},
		{"re2", `SELECT count(*) FROM events WHERE regexp_full_match(uri, ?)`, likeRegex(pattern)},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				var n int
				if err := db.QueryRowContext(context.Background(), c.sql, c.arg).Scan(&n); err != nil || n != 100_000 {
					b.Fatalf("count %d, %v; want 100000", n, err)
				}
			}
		})
	}
}
