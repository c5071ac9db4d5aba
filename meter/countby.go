package meter

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// CountBySubject returns, per subject, the number of events CountedEvents
// lists for p, counted by the database rather than streamed (billing's
// export): the same inner query and conditions, grouped by subject.
func CountBySubject(ctx context.Context, db *sql.DB, d Dialect, m *Meter, p Params) (map[string]int64, error) {
	p.WindowSize = ""
	p.GroupBy = slices.Sorted(maps.Keys(p.FilterGroupBy))
	inner, args, cols := renderInner(d, m, p, true)
	var where []string
	if m.ValueProperty != "" {
		where = append(where, "x IS NOT NULL")
	}
	for i, g := range cols {
		if vs, ok := p.FilterGroupBy[g]; ok {
			var b strings.Builder
			fmt.Fprintf(&b, "g%d IN (", i)
			args = placeholders(&b, vs, args)
			b.WriteString(")")
			where = append(where, b.String())
		}
	}
	q := "SELECT s, count(*) FROM (" + inner + ") AS e"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += fmt.Sprintf(" GROUP BY s LIMIT %d", MaxRows+1)
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("meter %s: count events: %w", m.Slug, err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		if len(out) == MaxRows {
			return nil, &FieldError{"subject", fmt.Sprintf("more than %d subjects", MaxRows)}
		}
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			return nil, fmt.Errorf("meter %s: count events: %w", m.Slug, err)
		}
		out[s] = n
	}
	return out, rows.Err()
}
