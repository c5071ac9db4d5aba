package meter

import (
	"context"
	"fmt"
	"slices"
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
// read from meter_agg are read from the events instead, if a count of the
// named subjects' events in those hours (bounded, and pruned by the
// events' primary key) is at most the dialect's SubjectEvents. The answer
// does not change: the events are what the hour rows were folded from,
// read as the cover reads the hours with late events (partials). Day rows
// are still read from meter_agg: a month is 30 of them per subject and
// group.
//
// Meters over API calls keep reading hour rows: the events table is
// sorted by API and time, and a call's subject is its company or else its
// user, which no index orders by.

// DefaultSubjectEvents is ClickHouse's SubjectEvents when not set: where
// reading the named subjects' events costs about what reading a month of
// hour rows for a thousand subjects does (docs/performance.md).
const DefaultSubjectEvents = 200_000

// subjectLimit is the most events of the named subjects read instead of
// hour rows: 0 for never.
func (d ClickHouse) subjectLimit() int {
	switch {
	case d.SubjectEvents == 0:
		return DefaultSubjectEvents
	case d.SubjectEvents < 0:
		return 0
	}
	return d.SubjectEvents
}

// subjectLimit: DuckDB writes each fold's hour rows sorted by subject and
// skips the row groups of other subjects by their minimum and maximum,
// while its events are in ingest order: its hour rows are the faster
// read, unless SubjectEvents says otherwise.
func (d DuckDB) subjectLimit() int { return max(d.SubjectEvents, 0) }

// subjectHours is c with its hour rows read from the events instead, when
// p names subjects whose events in those hours are at most the dialect's
// limit; else c itself.
func subjectHours(ctx context.Context, q querier, ad aggDialect, m *Meter, p Params, c cover) (cover, error) {
	limit := ad.subjectLimit()
	if limit <= 0 || len(p.Subjects) == 0 || m.EventType == CallType {
		return c, nil
	}
	lo, hi := int64(0), int64(0)
	for _, s := range c.agg {
		if s.span != hourMs {
			continue
		}
		if lo == hi {
			lo, hi = s.from, s.to
		}
		lo, hi = min(lo, s.from), max(hi, s.to)
	}
	if lo == hi {
		return c, nil
	}
	n, err := countSubjectEvents(ctx, q, ad.plain(), m, p.Subjects, lo, hi, limit)
	if err != nil || n > limit {
		return c, err
	}
	return eventHours(c), nil
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
	rows, err := q.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return 0, fmt.Errorf("meter %s: count the subjects' events: %w", m.Slug, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return 0, fmt.Errorf("meter %s: count the subjects' events: %w", m.Slug, err)
		}
	}
	return int(n), rows.Err()
}
