package meter

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Meter aggregates (docs/metering.md#aggregates): each meter's events
// folded per UTC hour and per UTC day (and per day of the zones its
// queries use: shift.go), per subject and groupBy values, into partial
// aggregates that combine exactly: the weighted count n of
// the events with a value (of all events for COUNT), the sum sx of value ×
// weight, the minimum mn, the maximum mx, and the latest (lt, lv) as
// (event time, value). A query reads whole hours and days from them and
// the rest (the minutes at the edges, hours cut by a window edge that is
// not on the hour, hours not folded yet or with events stored since the
// last fold) from the events, in one SQL statement. UNIQUE_COUNT meters
// are not folded: their queries read the events, so distinct counts stay
// exact without keeping every distinct value per hour.
//
// Folds are recorded in FoldsTable: (def, span_ms, from_ms, to_ms,
// version, built_ms) says the rows of version cover [from, to) at span
// (an hour, a day, or a shifted day) with every event ingested before
// built_ms; a row of span 0 records a finished pass: built_ms its start,
// from_ms the first
// hour it left unfolded. A pass refolds every hour that received events
// ingested since the previous pass began, so a reader need only read
// from the events the hours with events ingested since the last pass
// began (late, backfilled or resent events, and those of the hours not
// folded yet): answers never lag behind ingest.
const (
	AggTable   = "meter_agg"
	FoldsTable = "meter_folds"
	hourMs     = int64(time.Hour / time.Millisecond)
	dayMs      = 24 * hourMs
	// maxFoldHours bounds the hours one fold statement reads.
	maxFoldHours = 24 * 7
	// maxRanges bounds the time ranges of one aggregate query; a query
	// that would need more (windows whose edges are not on the hour, over
	// years) reads the events alone.
	maxRanges = 1000
	// maxUnion bounds the aggregate ranges a query reads with one SELECT
	// each (on DuckDB; more are joined by OR in one).
	maxUnion = 16
)

// Def is the key of a meter's aggregates: a digest of everything that
// decides them, so that a meter changed (same slug, other definition)
// gets new aggregates, and two meters defined alike share theirs.
func Def(m *Meter) string {
	b, _ := json.Marshal(struct {
		Org, Env, Type, Agg, Value string
		Groups                     []string
		Filter                     *CallFilter
	}{m.Org, m.Env, m.EventType, m.Aggregation, m.ValueProperty, groupPaths(m), m.Filter})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:16])
}

func groupPaths(m *Meter) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m.GroupBy)) {
		out = append(out, k+"="+m.GroupBy[k])
	}
	return out
}

// Aggregated says whether m's queries read aggregates (every aggregation
// but UNIQUE_COUNT).
func Aggregated(m *Meter) bool { return m.Aggregation != UniqueCount }

// aggDialect is what the aggregates need of an engine beyond Dialect.
type aggDialect interface {
	// plain is the dialect reading tables as stored (no FINAL): readers
	// of narrow ranges dedupe themselves (dedupe).
	plain() Dialect
	// dedupe keeps one row per (src, eid) of inner, or is inner itself
	// where the table holds each event once.
	dedupe(inner string) string
	needsIDs() bool
	// transactional: folds run in transactions that replace what they
	// refold, and a query reads its folds and rows in one snapshot.
	transactional() bool
	bigint(x string) string
	intN(x string) string
	numN(x string) string
	textN(x string) string
	nullText() string
	// ingestedSince is the condition that a row of the usage table (or
	// of the events table, for calls) was ingested at or after ms.
	ingestedSince(call bool, ms int64) (string, []any)
	// usageHours, if not "", is a table of (org, env, type, h, last_ms):
	// the hours (epoch ms) of the usage events of each insert, with their
	// ingest time, filled as they are stored: what dirtyHours reads
	// rather than the ingest times of every event.
	usageHours() string
	// bucketLists: the aggregates' buckets are named in IN lists rather
	// than ranges.
	bucketLists() bool
	// deleteWhere deletes the rows of table where cond holds.
	deleteWhere(table, cond string) string
	// timeTerm is the condition, with numbers only, that a usage event
	// (or an API call) is in [from, to) (ms).
	timeTerm(call bool, from, to int64) string
	// subjectLimit is the most events of the subjects a query names that
	// it reads instead of hour rows (subjecthours.go): fixed, or
	// estimated from the hour rows (auto); 0 and false for never.
	subjectLimit() (fixed int, auto bool)
}

func asAgg(d Dialect) (aggDialect, bool) {
	a, ok := d.(aggDialect)
	return a, ok
}

// fold is a row of FoldsTable.
type fold struct {
	span, from, to, version, built int64
	next                           int64 // of a pass: the first hour it left unfolded
}

// querier is a *sql.DB or a *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

// loadFolds reads def's folds overlapping [from, to), its last pass (ok
// false: none yet) and the shifted spans asked for (shift.go).
func loadFolds(ctx context.Context, q querier, def string, from, to int64) (last fold, folds []fold, asked map[int64]bool, ok bool, err error) {
	rows, err := q.QueryContext(ctx, `SELECT span_ms, from_ms, to_ms, version, built_ms, next_ms FROM `+FoldsTable+`
WHERE def = ? AND (span_ms = 0 OR from_ms = to_ms OR (to_ms > ? AND from_ms < ?))`, def, from, to)
	if err != nil {
		return last, nil, nil, false, fmt.Errorf("meter folds: %w", err)
	}
	defer rows.Close()
	asked = map[int64]bool{}
	for rows.Next() {
		var f fold
		var v uint64
		if err := rows.Scan(&f.span, &f.from, &f.to, &v, &f.built, &f.next); err != nil {
			return last, nil, nil, false, fmt.Errorf("meter folds: %w", err)
		}
		f.version = int64(v)
		switch {
		case f.span == 0:
			if !ok || f.version > last.version {
				last, ok = f, true
			}
		case f.from == f.to:
			if f.span > dayMs {
				asked[f.span] = true
			}
		default:
			folds = append(folds, f)
		}
	}
	return last, folds, asked, ok, rows.Err()
}

// seg is a stretch of time whose rows at one span come from one fold;
// ambiguous when other folds cover it too (their rows are left out by
// version).
type seg struct {
	from, to, version int64
	ambiguous         bool
}

// paint resolves folds of one span over [lo, hi): the newest fold
// covering each instant.
func paint(folds []fold, span, lo, hi int64) []seg {
	var fs []fold
	bounds := []int64{lo, hi}
	for _, f := range folds {
		if f.span == span && f.to > lo && f.from < hi {
			fs = append(fs, f)
			bounds = append(bounds, max(f.from, lo), min(f.to, hi))
		}
	}
	if len(fs) == 0 {
		return nil
	}
	slices.Sort(bounds)
	bounds = slices.Compact(bounds)
	slices.SortFunc(fs, func(a, b fold) int { return int(sign(a.from - b.from)) })
	var out []seg
	var active []fold // few overlap: a refolded hour within a fold's run
	i := 0
	for k := 0; k+1 < len(bounds); k++ {
		a, b := bounds[k], bounds[k+1]
		active = slices.DeleteFunc(active, func(f fold) bool { return f.to <= a })
		for i < len(fs) && fs[i].from <= a {
			if fs[i].to > a {
				active = append(active, fs[i])
			}
			i++
		}
		if len(active) == 0 {
			continue
		}
		best := active[0]
		for _, f := range active[1:] {
			if f.version > best.version {
				best = f
			}
		}
		s := seg{a, b, best.version, len(active) > 1}
		if n := len(out); n > 0 && out[n-1].to == a && out[n-1].version == s.version && out[n-1].ambiguous == s.ambiguous {
			out[n-1].to = b
		} else {
			out = append(out, s)
		}
	}
	return out
}

func sign(x int64) int64 {
	switch {
	case x < 0:
		return -1
	case x > 0:
		return 1
	}
	return 0
}

// span is a range [from, to) read from the events (span 0) or from the
// aggregates of one span; version 0 reads any version (the only one
// there).
type span struct {
	span, from, to, version int64
}

// cover splits the query's range into what the aggregates answer and
// what the events do. Every range it hands to the aggregates lies within
// one window of the answer, so that each aggregate row falls in the
// window of its events.
type cover struct {
	raw, agg []span
}

func (c *cover) add(list *[]span, s span) {
	if s.from >= s.to {
		return
	}
	if n := len(*list); n > 0 && (*list)[n-1].to == s.from && (*list)[n-1].span == s.span && (*list)[n-1].version == s.version {
		(*list)[n-1].to = s.to
		return
	}
	*list = append(*list, s)
}

func floorTo(t, step int64) int64 {
	q := t / step
	if t%step != 0 && t < 0 {
		q--
	}
	return q * step
}

func ceilTo(t, step int64) int64 { return -floorTo(-t, step) }

// pieces are the windows of p clipped to [from, to), split where the
// zone's offset changes: stretches whose events all fall in one window.
func pieces(p Params, segs []segment) [][2]int64 {
	from, to := p.From.UnixMilli(), p.To.UnixMilli()
	if p.WindowSize == "" {
		return [][2]int64{{from, to}}
	}
	var out [][2]int64
	si := 0
	for t := from; t < to; {
		for si < len(segs)-1 && t >= segs[si].until {
			si++
		}
		off := int64(segs[si].offset) * 1000
		var end int64
		if p.WindowSize == Day {
			end = floorTo(t+off, dayMs) + dayMs - off
		} else {
			w := int64(60_000)
			if p.WindowSize == Hour {
				w = hourMs
			}
			o := off % w
			end = floorTo(t+o, w) + w - o
		}
		if si < len(segs)-1 && segs[si].until < end {
			end = segs[si].until
		}
		if end > to {
			end = to
		}
		if end <= t {
			end = t + 1
		}
		out = append(out, [2]int64{t, end})
		t = end
	}
	return out
}

// windows are the windows of p clipped to [from, to): pieces, joined
// where only an offset change parts them (a DAY window in which clocks
// change). A row of aggregates within a window counts in it: the outer
// query places it by its start's offset, which maps every instant of the
// window to the window's day.
func windows(p Params, segs []segment) [][2]int64 {
	pcs := pieces(p, segs)
	if p.WindowSize != Day || len(segs) == 1 {
		return pcs
	}
	day := func(t int64) int64 {
		i, _ := slices.BinarySearchFunc(segs[:len(segs)-1], t, func(s segment, t int64) int { return int(sign(s.until - 1 - t)) })
		return floorTo(t+int64(segs[i].offset)*1000, dayMs)
	}
	out := pcs[:1]
	for _, pc := range pcs[1:] {
		if n := len(out); out[n-1][1] == pc[0] && day(out[n-1][0]) == day(pc[0]) {
			out[n-1][1] = pc[1]
			continue
		}
		out = append(out, pc)
	}
	return out
}

// plan is the cover of p for a meter whose last pass is last, with folds,
// and dirty the hours (epoch ms) with events ingested since last began.
func plan(p Params, segs []segment, last fold, folds []fold, dirty map[int64]bool) cover {
	from, to := p.From.UnixMilli(), p.To.UnixMilli()
	limit := min(to, last.next)
	// The folds of each span: hours, UTC days and shifted days.
	painted := map[int64][]seg{}
	for _, f := range folds {
		if _, done := painted[f.span]; !done {
			painted[f.span] = paint(folds, f.span, floorSpan(from, f.span), ceilSpan(to, f.span))
		}
	}
	hours := painted[hourMs]
	shifts := slices.Sorted(maps.Keys(painted))
	shifts = slices.DeleteFunc(shifts, func(s int64) bool { return s <= dayMs })
	var c cover
	// hourly fills [a, b) (whole hours) from the hour folds, the rest
	// from the events.
	hourly := func(a, b int64) {
		for a < b {
			i, _ := slices.BinarySearchFunc(hours, a, func(s seg, t int64) int { return int(sign(s.to - 1 - t)) })
			if i == len(hours) || hours[i].from >= b {
				c.add(&c.raw, span{0, a, b, 0})
				return
			}
			s := hours[i]
			if s.from > a {
				c.add(&c.raw, span{0, a, s.from, 0})
				a = s.from
			}
			e := min(s.to, b)
			for h := a; h < e; h += hourMs {
				if dirty[h] {
					c.add(&c.raw, span{0, h, h + hourMs, 0})
					continue
				}
				v := int64(0)
				if s.ambiguous {
					v = s.version
				}
				c.add(&c.agg, span{hourMs, h, h + hourMs, v})
			}
			a = e
		}
	}
	// days are the days of span sp within [a, b), completed by limit,
	// that one fold covers and no hour with new events touches (found
	// among the few such hours, sorted: a query over decades checks each
	// day of each span kept).
	dirtyList := slices.Sorted(maps.Keys(dirty))
	// With out nil, days only counts them.
	days := func(sp, a, b int64, out *[]span) int {
		n := 0
		for _, s := range painted[sp] {
			for d := ceilSpan(max(a, s.from), sp); d+dayMs <= min(b, limit, s.to); d += dayMs {
				if i, _ := slices.BinarySearch(dirtyList, floorTo(d, hourMs)); i < len(dirtyList) && dirtyList[i] < d+dayMs {
					continue
				}
				n++
				if out != nil {
					v := int64(0)
					if s.ambiguous {
						v = s.version
					}
					*out = append(*out, span{sp, d, d + dayMs, v})
				}
			}
		}
		return n
	}
	// fill covers [a, b) with UTC days, hours and events.
	fill := func(a, b int64) {
		ha, hb := ceilTo(a, hourMs), floorTo(b, hourMs)
		if hb > limit {
			hb = max(floorTo(limit, hourMs), ha)
		}
		if ha >= hb {
			c.add(&c.raw, span{0, a, b, 0})
			return
		}
		c.add(&c.raw, span{0, a, ha, 0})
		x := ha
		var ds []span
		days(dayMs, ha, hb, &ds)
		for _, d := range ds {
			hourly(x, d.from)
			c.add(&c.agg, d)
			x = d.to
		}
		hourly(x, hb)
		c.add(&c.raw, span{0, hb, b, 0})
	}
	// shifted covers [a, b) with the days of the shift among grids that
	// covers the most of it, if more than UTC days do (a day window of
	// the zone it was kept for), and the stretches around them with the
	// other shifts (a month in which clocks change), UTC days and hours.
	var shifted func(a, b int64, grids []int64)
	shifted = func(a, b int64, grids []int64) {
		bi := -1
		if len(grids) > 0 {
			n := days(dayMs, a, b, nil)
			for i, sp := range grids {
				if k := days(sp, a, b, nil); k > n {
					n, bi = k, i
				}
			}
		}
		if bi < 0 {
			fill(a, b)
			return
		}
		var best []span
		days(grids[bi], a, b, &best)
		rest := slices.Delete(slices.Clone(grids), bi, bi+1)
		x := a
		for _, d := range best {
			shifted(x, d.from, rest)
			c.add(&c.agg, d)
			x = d.to
		}
		shifted(x, b, rest)
	}
	for _, w := range windows(p, segs) {
		shifted(w[0], w[1], shifts)
	}
	return c
}

// dirtyHours are the hours (epoch ms) with events of m ingested at or
// after ms.
func dirtyHours(ctx context.Context, q querier, d Dialect, m *Meter, ms int64) (map[int64]bool, error) {
	ad, _ := asAgg(d)
	pd := ad.plain()
	call := m.EventType == CallType
	cond, args := ad.ingestedSince(call, ms)
	var sqlText string
	if call {
		sqlText = fmt.Sprintf("SELECT DISTINCT %s * %d FROM %s WHERE org = ? AND env = ? AND %s",
			pd.IDiv(pd.CallTime(), strconv.FormatInt(hourMs, 10)), hourMs, pd.CallTable(), cond)
		args = append([]any{m.Org, m.Env}, args...)
	} else if t := ad.usageHours(); t != "" {
		sqlText = fmt.Sprintf("SELECT DISTINCT h FROM %s WHERE org = ? AND env = ? AND type = ? AND last_ms >= ?", t)
		args = []any{m.Org, m.Env, m.EventType, ms}
	} else {
		sqlText = fmt.Sprintf("SELECT DISTINCT %s * %d FROM %s WHERE org = ? AND env = ? AND type = ? AND %s",
			pd.IDiv("ts_ms", strconv.FormatInt(hourMs, 10)), hourMs, pd.UsageTable(), cond)
		args = append([]any{m.Org, m.Env, m.EventType}, args...)
	}
	rows, err := q.QueryContext(ctx, sqlText, args...)
	if err != nil {
		return nil, fmt.Errorf("meter %s: hours with new events: %w", m.Slug, err)
	}
	defer rows.Close()
	out := map[int64]bool{}
	for rows.Next() {
		var h int64
		if err := rows.Scan(&h); err != nil {
			return nil, err
		}
		out[h] = true
	}
	return out, rows.Err()
}

// partials is the query of the events of m in p's range (narrowed to
// ranges when given) as partial aggregates: pt (time), ps (subject), pg0..
// (the values of cols), n, sx, mn, mx, lt, lv.
func partials(d Dialect, m *Meter, p Params, ranges []span) (string, []any, []string) {
	ad, _ := asAgg(d)
	pd := ad.plain()
	call := m.EventType == CallType
	if len(ranges) > 0 {
		p.From, p.To = time.UnixMilli(ranges[0].from).UTC(), time.UnixMilli(ranges[len(ranges)-1].to).UTC()
	}
	inner, args, cols := renderInner(pd, m, p, ad.needsIDs())
	if len(ranges) > 1 {
		// The terms are plain comparisons of one column with numbers: on
		// ClickHouse 18.16, dozens of terms that convert their bounds
		// (toDateTime) cost a quarter of a second to plan.
		terms := make([]string, len(ranges))
		for i, r := range ranges {
			terms[i] = ad.timeTerm(call, r.from, r.to)
		}
		inner += " AND (" + strings.Join(terms, " OR ") + ")"
	}
	inner = ad.dedupe(inner)
	n := "w"
	if m.Aggregation != Count {
		n = "CASE WHEN x IS NOT NULL THEN w ELSE 0 END"
	}
	x, sx, lt := ad.numN("NULL"), ad.numN("NULL"), ad.intN("NULL")
	if m.ValueProperty != "" {
		x = ad.numN("x")
		sx = ad.numN("x * w")
		lt = ad.intN("CASE WHEN x IS NOT NULL THEN t END")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "SELECT %s AS pt, s AS ps", ad.bigint("t"))
	for i := range cols {
		fmt.Fprintf(&b, ", %s AS pg%d", ad.textN(fmt.Sprintf("g%d", i)), i)
	}
	fmt.Fprintf(&b, ", %s AS n, %s AS sx, %s AS mn, %s AS mx, %s AS lt, %s AS lv FROM (%s) AS r",
		d.Double(n), sx, x, x, lt, x, inner)
	return b.String(), args, cols
}

// combine is the meter's aggregate of partial rows.
func combine(d Dialect, m *Meter) string {
	switch m.Aggregation {
	case Count:
		return d.Double("sum(n)")
	case Sum:
		return d.Double("sum(sx)")
	case Avg:
		return d.Double("sum(sx)") + " / " + d.Double("sum(n)")
	case Min:
		return d.Double("min(mn)")
	case Max:
		return d.Double("max(mx)")
	case Latest:
		return d.Double(d.ArgMax("lv", "lt"))
	}
	panic("meter: no partial aggregates for " + m.Aggregation)
}

// renderAgg is the SQL of a meter query over the cover c.
func renderAgg(d Dialect, m *Meter, p Params, c cover) (string, []any, error) {
	ad, _ := asAgg(d)
	var parts []string
	var args []any
	var cols []string
	if len(c.raw) > 0 {
		q, a, cs := partials(d, m, p, c.raw)
		parts, args, cols = append(parts, q), a, cs
	}
	if len(c.agg) > 0 {
		// The group columns of the query, as positions in the rows' gv.
		gkeys := slices.Sorted(maps.Keys(m.GroupBy))
		if cols == nil {
			_, _, cols = renderInner(ad.plain(), m, p, false)
		}
		var b strings.Builder
		b.WriteString("SELECT bucket_ms AS pt, subject AS ps")
		for i, g := range cols {
			fmt.Fprintf(&b, ", gv[%d] AS pg%d", slices.Index(gkeys, g)+2, i)
		}
		fmt.Fprintf(&b, ", n, sx, mn, mx, lt, lv FROM %s WHERE def = ? AND version IN (SELECT version FROM %s WHERE def = ?) AND ", AggTable, FoldsTable)
		head := b.String()
		def := Def(m)
		var subj strings.Builder
		var sargs []any
		if len(p.Subjects) > 0 {
			subj.WriteString(" AND subject IN (")
			sargs = placeholders(&subj, p.Subjects, nil)
			subj.WriteString(")")
		}
		var terms []string
		if ad.bucketLists() && len(c.agg) > 8 {
			var l strings.Builder
			aggLists(&l, c.agg)
			terms = append(terms, l.String())
		} else {
			for _, s := range c.agg {
				t := fmt.Sprintf("span_ms = %d AND bucket_ms >= %d AND bucket_ms < %d", s.span, s.from, s.to)
				if s.version != 0 {
					t += fmt.Sprintf(" AND version = %d", s.version)
				}
				terms = append(terms, t)
			}
		}
		if !ad.bucketLists() && len(terms) <= maxUnion {
			// One SELECT per range: DuckDB skips the row groups outside
			// a range of plain comparisons by their min and max, which it
			// cannot for ranges joined by OR.
			for _, t := range terms {
				parts = append(parts, head+t+subj.String())
				args = append(append(args, def, def), sargs...)
			}
		} else {
			parts = append(parts, head+"("+strings.Join(terms, " OR ")+")"+subj.String())
			args = append(append(args, def, def), sargs...)
		}
	}
	keep := ""
	if m.Aggregation == Latest {
		keep = "lt IS NOT NULL"
	}
	return outerQuery(d, p, cols, "p", strings.Join(parts, " UNION ALL ")+") AS u", combine(d, m), keep, args)
}

// planQuery is the SQL answering p for m: over the aggregates where they
// cover the range, else over the events (Render). It reads the folds
// through q (the query's snapshot on engines with transactions). ask are
// the shifted spans (shift.go) p would read that m does not keep yet.
func planQuery(ctx context.Context, q querier, d Dialect, m *Meter, p Params) (sqlText string, args []any, ask []int64, err error) {
	if _, ok := asAgg(d); !ok || !Aggregated(m) || p.WindowSize == Minute {
		sqlText, args, err = Render(d, m, p)
		return sqlText, args, nil, err
	}
	segs, err := zoneSegments(p.TimeZone, p.From, p.To)
	if err != nil {
		return "", nil, nil, err
	}
	last, folds, asked, ok, err := loadFolds(ctx, q, Def(m), p.From.UnixMilli(), p.To.UnixMilli())
	if err != nil {
		sqlText, args, err = Render(d, m, p)
		return sqlText, args, nil, err
	}
	ask = toAsk(asked, wantedSpans(p, segs))
	if !ok {
		sqlText, args, err = Render(d, m, p)
		return sqlText, args, ask, err
	}
	dirty, err := dirtyHours(ctx, q, d, m, last.built)
	if err != nil {
		return "", nil, nil, err
	}
	c := plan(p, segs, last, folds, dirty)
	if len(c.agg) == 0 || len(c.raw)+len(c.agg) > maxRanges {
		sqlText, args, err = Render(d, m, p)
		return sqlText, args, ask, err
	}
	ad, _ := asAgg(d)
	if c, err = subjectHours(ctx, q, ad, m, p, c); err != nil {
		return "", nil, nil, err
	}
	sqlText, args, err = renderAgg(d, m, p, c)
	return sqlText, args, ask, err
}

// FoldConfig is what Fold needs of a store.
type FoldConfig struct {
	DB      *sql.DB
	Dialect Dialect
	// Built is the start of a pass over the usage events (call false)
	// or the API calls (call true): no later than the ingest time of any
	// event the pass may not see (one committed after it looks).
	Built func(call bool) time.Time
	// Version numbers a pass's folds (newer passes higher); nil means
	// the time in nanoseconds.
	Version func() int64
}

// Fold brings the aggregates of meters up to date: it folds the hours
// and days completed since the last pass and those that received events
// since then, backfills meters that have none, and drops the aggregates
// of meters that no longer exist (or were changed).
func Fold(ctx context.Context, cfg FoldConfig, meters []Meter) error {
	ad, ok := asAgg(cfg.Dialect)
	if !ok {
		return nil
	}
	if cfg.Version == nil {
		cfg.Version = func() int64 { return time.Now().UnixNano() }
	}
	defs := map[string]bool{}
	for i := range meters {
		m := &meters[i]
		if !Aggregated(m) {
			continue
		}
		def := Def(m)
		if defs[def] {
			continue
		}
		defs[def] = true
		if err := foldMeter(ctx, cfg, ad, m, def); err != nil {
			return err
		}
	}
	return dropStale(ctx, cfg, ad, defs)
}

func foldMeter(ctx context.Context, cfg FoldConfig, ad aggDialect, m *Meter, def string) error {
	call := m.EventType == CallType
	built := cfg.Built(call).UnixMilli()
	version := cfg.Version()
	cur := floorTo(built, hourMs)
	last, _, _, ok, err := loadFolds(ctx, cfg.DB, def, 0, 0)
	if err != nil {
		return err
	}
	// m's first event, read once if needed.
	var first struct {
		read, any bool
		at        int64
	}
	firstAt := func() (int64, bool, error) {
		if !first.read {
			at, any, err := firstEvent(ctx, cfg.DB, ad.plain(), m)
			if err != nil {
				return 0, false, err
			}
			first.read, first.any, first.at = true, any, at
		}
		return first.at, first.any, nil
	}
	var runs [][2]int64 // hours to fold
	days := map[int64]bool{}
	var dirty map[int64]bool
	if !ok {
		// Backfill: everything before the current hour, the time before
		// the first event recorded empty.
		first, any, err := firstAt()
		if err != nil {
			return err
		}
		start := cur
		if any {
			start = min(floorTo(first, hourMs), cur)
		}
		lo := floorTo(minTime.UnixMilli(), dayMs)
		if err := record(ctx, cfg, def, []fold{
			{span: hourMs, from: lo, to: start, version: version, built: built},
			{span: dayMs, from: lo, to: floorTo(start, dayMs), version: version, built: built},
		}); err != nil {
			return err
		}
		for h := start; h < cur; h += maxFoldHours * hourMs {
			runs = append(runs, [2]int64{h, min(h+maxFoldHours*hourMs, cur)})
		}
		for d := floorTo(start, dayMs); d+dayMs <= cur; d += dayMs {
			days[d] = true
		}
	} else {
		// The hours completed since, and those with new events.
		for h := last.next; h < cur; h += maxFoldHours * hourMs {
			runs = append(runs, [2]int64{h, min(h+maxFoldHours*hourMs, cur)})
		}
		for d := floorTo(last.next, dayMs); d+dayMs <= cur; d += dayMs {
			if d+dayMs > last.next {
				days[d] = true
			}
		}
		dirty, err = dirtyHours(ctx, cfg.DB, cfg.Dialect, m, last.built)
		if err != nil {
			return err
		}
		for _, h := range slices.Sorted(maps.Keys(dirty)) {
			if h >= last.next || h >= cur {
				continue
			}
			if n := len(runs); n > 0 && runs[n-1][1] == h && runs[n-1][1]-runs[n-1][0] < maxFoldHours*hourMs {
				runs[n-1][1] = h + hourMs
			} else {
				runs = append(runs, [2]int64{h, h + hourMs})
			}
			if d := floorTo(h, dayMs); d+dayMs <= cur {
				days[d] = true
			}
		}
	}
	for _, r := range runs {
		if err := foldRange(ctx, cfg, ad, m, def, hourMs, r[0], r[1], version, built, ok && r[0] < last.next); err != nil {
			return err
		}
	}
	for _, d := range slices.Sorted(maps.Keys(days)) {
		if err := foldRange(ctx, cfg, ad, m, def, dayMs, d, d+dayMs, version, built, ok && d < last.next); err != nil {
			return err
		}
	}
	if err := foldShifts(ctx, cfg, ad, m, def, last, ok, dirty, firstAt, cur, version, built); err != nil {
		return err
	}
	return record(ctx, cfg, def, []fold{{span: 0, version: version, built: built, next: cur}})
}

// firstEvent is the time of m's earliest event.
func firstEvent(ctx context.Context, db *sql.DB, d Dialect, m *Meter) (int64, bool, error) {
	var q string
	args := []any{m.Org, m.Env}
	if m.EventType == CallType {
		q = fmt.Sprintf("SELECT count(*), min(%s) FROM %s WHERE org = ? AND env = ?", d.CallTime(), d.CallTable())
	} else {
		q = fmt.Sprintf("SELECT count(*), min(ts_ms) FROM %s WHERE org = ? AND env = ? AND type = ?", d.UsageTable())
		args = append(args, m.EventType)
	}
	var n uint64
	var first sql.NullInt64
	if err := db.QueryRowContext(ctx, q, args...).Scan(&n, &first); err != nil {
		return 0, false, fmt.Errorf("meter %s: first event: %w", m.Slug, err)
	}
	return first.Int64, n > 0, nil
}

// foldRange folds m's events of [from, to) into rows of span, and records
// the fold; refold says rows of an older fold may be there.
func foldRange(ctx context.Context, cfg FoldConfig, ad aggDialect, m *Meter, def string, span, from, to, version, built int64, refold bool) error {
	p := Params{From: time.UnixMilli(from).UTC(), To: time.UnixMilli(to).UTC(), TimeZone: time.UTC,
		GroupBy: slices.Sorted(maps.Keys(m.GroupBy))}
	inner, args, cols := partials(cfg.Dialect, m, p, nil)
	d := cfg.Dialect
	gl := []string{ad.nullText()}
	group := []string{"fb", "ps"}
	for i := range cols {
		gl = append(gl, fmt.Sprintf("pg%d", i))
		group = append(group, fmt.Sprintf("pg%d", i))
	}
	q := fmt.Sprintf(`INSERT INTO %s (def, span_ms, version, bucket_ms, subject, gv, n, sx, mn, mx, lt, lv)
SELECT ?, %d, %d, %s * %d + %d AS fb, ps, [%s], sum(n), sum(sx), min(mn), max(mx), max(lt), %s FROM (%s) AS q GROUP BY %s`,
		AggTable, span, version, d.IDiv(fmt.Sprintf("(pt - %d)", spanShift(span)), strconv.FormatInt(spanLen(span), 10)), spanLen(span), spanShift(span), strings.Join(gl, ", "),
		d.ArgMax("lv", "lt"), inner, strings.Join(group, ", "))
	if ad.transactional() {
		// DuckDB keeps rows in insert order: sorted by subject, a query
		// for a few customers skips most row groups by their min and max.
		q += " ORDER BY ps, fb"
	}
	args = append([]any{def}, args...)
	f := fold{span: span, from: from, to: to, version: version, built: built}
	if !ad.transactional() {
		// The rows first, then the fold that points readers at them; rows
		// of a fold never recorded are never read.
		if _, err := cfg.DB.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("meter %s: fold: %w", m.Slug, err)
		}
		if err := record(ctx, cfg, def, []fold{f}); err != nil {
			return err
		}
		if refold {
			// The rows the new fold replaces; until the deletion is done,
			// readers leave them out by version.
			_, err := cfg.DB.ExecContext(ctx, ad.deleteWhere(AggTable, fmt.Sprintf("def = ? AND span_ms = %d AND bucket_ms >= %d AND bucket_ms < %d AND version < %d", span, from, to, version)), def)
			if err != nil {
				return fmt.Errorf("meter %s: drop refolded rows: %w", m.Slug, err)
			}
		}
		return nil
	}
	tx, err := cfg.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM `+AggTable+` WHERE def = ? AND span_ms = ? AND bucket_ms >= ? AND bucket_ms < ?`, def, span, from, to); err != nil {
		return fmt.Errorf("meter %s: fold: %w", m.Slug, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM `+FoldsTable+` WHERE def = ? AND span_ms = ? AND from_ms >= ? AND to_ms <= ?`, def, span, from, to); err != nil {
		return fmt.Errorf("meter %s: fold: %w", m.Slug, err)
	}
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("meter %s: fold: %w", m.Slug, err)
	}
	if err := recordIn(ctx, tx, def, []fold{f}); err != nil {
		return err
	}
	return tx.Commit()
}

func record(ctx context.Context, cfg FoldConfig, def string, fs []fold) error {
	ad, _ := asAgg(cfg.Dialect)
	if !ad.transactional() {
		return recordIn(ctx, cfg.DB, def, fs)
	}
	tx, err := cfg.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if len(fs) == 1 && fs[0].span == 0 {
		// One finished pass is all a reader needs.
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+FoldsTable+` WHERE def = ? AND span_ms = 0`, def); err != nil {
			return err
		}
	}
	if err := recordIn(ctx, tx, def, fs); err != nil {
		return err
	}
	return tx.Commit()
}

func recordIn(ctx context.Context, q querier, def string, fs []fold) error {
	for _, f := range fs {
		if f.span != 0 && f.from >= f.to {
			continue
		}
		// INSERT ... SELECT: ClickHouse's driver sends it as a query.
		if _, err := q.ExecContext(ctx, `INSERT INTO `+FoldsTable+` (def, span_ms, from_ms, to_ms, version, built_ms, next_ms) SELECT ?, ?, ?, ?, ?, ?, ?`,
			def, f.span, f.from, f.to, uint64(f.version), f.built, f.next); err != nil {
			return fmt.Errorf("record meter fold: %w", err)
		}
	}
	return nil
}

// dropStale deletes the aggregates of definitions no meter has.
func dropStale(ctx context.Context, cfg FoldConfig, ad aggDialect, keep map[string]bool) error {
	rows, err := cfg.DB.QueryContext(ctx, `SELECT DISTINCT def FROM `+FoldsTable)
	if err != nil {
		return fmt.Errorf("meter folds: %w", err)
	}
	var stale []string
	for rows.Next() {
		var def string
		if err := rows.Scan(&def); err != nil {
			rows.Close()
			return err
		}
		if !keep[def] {
			stale = append(stale, def)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(stale) == 0 {
		return err
	}
	var b strings.Builder
	args := placeholders(&b, stale, nil)
	for _, t := range []string{FoldsTable, AggTable} {
		if _, err := cfg.DB.ExecContext(ctx, ad.deleteWhere(t, "def IN ("+b.String()+")"), args...); err != nil {
			return fmt.Errorf("drop aggregates of %d meters: %w", len(stale), err)
		}
	}
	return nil
}

// Plan is the SQL that Query runs for p (and its arguments): for
// benchmarks and for seeing which part of a range the aggregates answer.
func Plan(ctx context.Context, db *sql.DB, d Dialect, m *Meter, p Params) (string, []any, error) {
	q, args, _, err := planQuery(ctx, db, d, m, p)
	return q, args, err
}

// aggLists writes the condition that a row is of the buckets of spans, as
// IN lists per span (and version, where several folds cover them): a few
// IN lists plan fast on ClickHouse 18.16, where dozens of OR-ed ranges
// take a quarter of a second.
func aggLists(b *strings.Builder, spans []span) {
	type key struct{ span, version int64 }
	lists := map[key][]string{}
	var keys []key
	lo, hi := spans[0].from, spans[0].to
	for _, s := range spans {
		k := key{s.span, s.version}
		if _, ok := lists[k]; !ok {
			keys = append(keys, k)
		}
		for t := s.from; t < s.to; t += spanLen(s.span) {
			lists[k] = append(lists[k], strconv.FormatInt(t, 10))
		}
		lo, hi = min(lo, s.from), max(hi, s.to)
	}
	fmt.Fprintf(b, "bucket_ms >= %d AND bucket_ms < %d AND (", lo, hi)
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" OR ")
		}
		fmt.Fprintf(b, "(span_ms = %d", k.span)
		if k.version != 0 {
			fmt.Fprintf(b, " AND version = %d", k.version)
		}
		fmt.Fprintf(b, " AND bucket_ms IN (%s))", strings.Join(lists[k], ", "))
	}
	b.WriteString(")")
}

// DefaultFoldInterval is how often a store brings the meters' aggregates
// up to date.
const DefaultFoldInterval = time.Minute

// RunFolds calls fold at once and then every interval (a store's fold
// loop), logging its errors, until the returned stop is called; stop
// cancels a pass under way and returns once it has ended. every 0 means
// DefaultFoldInterval; a negative every runs no loop (for tests that fold
// themselves).
func RunFolds(every time.Duration, fold func(context.Context) error, log *slog.Logger) (stop func()) {
	if every < 0 {
		return func() {}
	}
	if every == 0 {
		every = DefaultFoldInterval
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if err := fold(ctx); err != nil && ctx.Err() == nil {
				log.Error("fold meter aggregates", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
