package meter

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// A few subjects' hours from the events (docs/metering.md#a-few-subjects-hours):
// ClickHouse keeps meter_agg in the order (def, span_ms, bucket_ms,
// subject), so that the hour rows of a range lie together for queries
// over every subject (the hours at the edges of Europe/Berlin's days),
// but a query naming one subject reads every subject's hour rows of its
// range to find that subject's: a month of hours for 1,000 subjects and
// three models is 2.16 M rows. The usage events are sorted by (org, env,
// type, subject, time), so the same subject's events of the month are
// read alone. So when a query names subjects, the hours its cover would
// read from meter_agg are read from the events instead when that reads
// less: when the named subjects' events in those hours (counted with the
// events' primary key, and no further than the limit) are at most the
// hour rows there (estimated from a few sampled hours) divided by
// eventCost. The answer does not change: the events are what the hour
// rows were folded from, read as the cover reads the hours with late
// events (partials). Day rows are still read from meter_agg: a month is
// 30 of them per subject and group.
//
// Meters over API calls keep reading hour rows: the events table is
// sorted by API and time, and a call's subject is its company or else its
// user, which no index orders by.
const (
	// eventCost is how many hour rows cost what one event costs to read
	// on ClickHouse: the events are deduplicated by (source, id) and
	// their values looked up in arrays; measured about 14 in
	// BenchmarkMeterQuery (docs/performance.md).
	eventCost = 16
	// sampledHours are the hours whose rows are counted to estimate the
	// hour rows of the range.
	sampledHours = 3
)

// subjectLimit is the most events of the named subjects read instead of
// hour rows: fixed, or (auto) estimated from the hour rows; 0 for never.
func (d ClickHouse) subjectLimit() (fixed int, auto bool) {
	switch {
	case d.SubjectEvents == 0:
		return 0, true
	case d.SubjectEvents < 0:
		return 0, false
	}
	return d.SubjectEvents, false
}

// subjectLimit: DuckDB writes each fold's hour rows sorted by subject and
// skips the row groups of other subjects by their minimum and maximum,
// while its events are in ingest order: its hour rows are the faster
// read, unless SubjectEvents says otherwise.
func (d DuckDB) subjectLimit() (int, bool) { return max(d.SubjectEvents, 0), false }

// subjectHours is c with its hour rows read from the events instead, when
// p names subjects whose events in those hours are within the dialect's
// limit; else c itself.
func subjectHours(ctx context.Context, q querier, ad aggDialect, m *Meter, p Params, c cover) (cover, error) {
	limit, auto := ad.subjectLimit()
	if limit <= 0 && !auto || len(p.Subjects) == 0 || m.EventType == CallType {
		return c, nil
	}
	var hours []span
	n := int64(0)
	for _, s := range c.agg {
		if s.span == hourMs {
			hours = append(hours, s)
			n += (s.to - s.from) / hourMs
		}
	}
	if n == 0 {
		return c, nil
	}
	if auto {
		rows, err := sampleHourRows(ctx, q, m, hours, n)
		if err != nil {
			return c, err
		}
		limit = int(min(rows/eventCost, 1<<40))
		if limit <= 0 {
			return c, nil
		}
	}
	lo, hi := hours[0].from, hours[0].to
	for _, s := range hours {
		lo, hi = min(lo, s.from), max(hi, s.to)
	}
	k, err := countSubjectEvents(ctx, q, ad.plain(), m, p.Subjects, lo, hi, limit)
	if err != nil || k > limit {
		return c, err
	}
	return eventHours(c), nil
}

// sampleHourRows estimates the rows of meter_agg of m's hours in spans
// (n hours in all, in order): those of sampledHours hours spread over
// them, times n over sampledHours.
func sampleHourRows(ctx context.Context, q querier, m *Meter, spans []span, n int64) (int64, error) {
	var at []string
	for i := range int64(sampledHours) {
		k := (2*i + 1) * n / (2 * sampledHours) // the hour at (2i+1)/6 of the way
		for _, s := range spans {
			if h := (s.to - s.from) / hourMs; k >= h {
				k -= h
				continue
			}
			at = append(at, strconv.FormatInt(s.from+k*hourMs, 10))
			break
		}
	}
	at = slices.Compact(at) // fewer hours than samples
	var rows uint64
	if err := scanOne(ctx, q, &rows, fmt.Sprintf("SELECT count(*) FROM %s WHERE def = ? AND span_ms = %d AND bucket_ms IN (%s)", AggTable, hourMs, strings.Join(at, ", ")), Def(m)); err != nil {
		return 0, fmt.Errorf("meter %s: sample hour rows: %w", m.Slug, err)
	}
	return int64(rows) * n / int64(len(at)), nil
}

// scanOne reads the one value of a query into dest.
func scanOne(ctx context.Context, q querier, dest any, sqlText string, args ...any) error {
	rows, err := q.QueryContext(ctx, sqlText, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(dest); err != nil {
			return err
		}
	}
	return rows.Err()
}

// eventHours is c with its hour rows moved to the ranges read from the
// events, adjacent ranges joined.
func eventHours(c cover) cover {
	var out cover
	raw := slices.Clone(c.raw)
	for _, s := range c.agg {
		if s.span == hourMs {
			raw = append(raw, span{0, s.from, s.to, 0})
		} else {
			out.agg = append(out.agg, s)
		}
	}
	slices.SortFunc(raw, func(a, b span) int { return int(sign(a.from - b.from)) })
	for _, s := range raw {
		out.add(&out.raw, s)
	}
	return out
}

// countSubjectEvents counts the events of m's type and subjects in
// [from, to), up to limit + 1 (an upper bound of what partials reads:
// duplicates not yet merged away count).
func countSubjectEvents(ctx context.Context, q querier, d Dialect, m *Meter, subjects []string, from, to int64, limit int) (int, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "SELECT count(*) FROM (SELECT 1 AS one FROM %s WHERE org = ? AND env = ? AND type = ? AND ts_ms >= ? AND ts_ms < ? AND subject IN (", d.UsageTable())
	args := placeholders(&b, subjects, []any{m.Org, m.Env, m.EventType, from, to})
	fmt.Fprintf(&b, ") LIMIT %d) AS c", limit+1)
	var n uint64
	if err := scanOne(ctx, q, &n, b.String(), args...); err != nil {
		return 0, fmt.Errorf("meter %s: count the subjects' events: %w", m.Slug, err)
	}
	return int(n), nil
}
