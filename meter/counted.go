package meter

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// CountedEvent is one event a meter query counted: what a customer-facing
// export lists and a statement's digest is taken over (billing).
type CountedEvent struct {
	Subject string
	Source  string // "" for an API call
	ID      string
	Time    time.Time
	// Value is the event's value for the meter (1 for COUNT; the call's
	// weight for COUNT over API calls); for UNIQUE_COUNT, Text holds it.
	Value float64
	Text  string
}

// CountedEvents calls fn with each event that Query counts for p, ignoring
// p's windows and groups (the events are the same whatever the answer is
// split by), ordered by subject, source and id, so that a digest over them
// is the same on both engines. It reads the same inner query as Query, so
// the events listed are exactly those counted.
func CountedEvents(ctx context.Context, db *sql.DB, d Dialect, m *Meter, p Params, fn func(CountedEvent) error) error {
	p.WindowSize = ""
	p.GroupBy = slices.Sorted(maps.Keys(p.FilterGroupBy))
	inner, args, cols := renderInner(d, m, p, true)
	sel := "s, src, eid, t, w"
	if m.ValueProperty != "" {
		if m.Aggregation == UniqueCount {
			sel += ", " + d.Text("x")
		} else {
			sel += ", x"
		}
	}
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
	q := "SELECT " + sel + " FROM (" + inner + ") AS e"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY s, src, eid"
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("meter %s: counted events: %w", m.Slug, err)
	}
	defer rows.Close()
	call := m.EventType == CallType
	for rows.Next() {
		var e CountedEvent
		var t, w int64
		var x sql.NullFloat64
		var text sql.NullString
		dest := []any{&e.Subject, &e.Source, &e.ID, &t, &w}
		if m.ValueProperty != "" {
			if m.Aggregation == UniqueCount {
				dest = append(dest, &text)
			} else {
				dest = append(dest, &x)
			}
		}
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("meter %s: counted events: %w", m.Slug, err)
		}
		e.Time = time.UnixMilli(t).UTC()
		switch {
		case m.Aggregation == Count && call:
			e.Value = float64(w)
		case m.Aggregation == Count:
			e.Value = 1
		case m.Aggregation == UniqueCount:
			e.Text = text.String
		default:
			e.Value = x.Float64
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}
