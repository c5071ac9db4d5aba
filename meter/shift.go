package meter

import (
	"context"
	"fmt"
	"maps"
	"slices"
)

// Shifted days (docs/metering.md#days-in-other-time-zones): a DAY window
// in a zone whose offset from UTC is not a whole day (Europe/Berlin's days
// start at 22:00 or 23:00 UTC) fits no UTC day row, and would be read from
// 24 hour rows per subject and group. So a meter also keeps day rows per
// shift: rows of span dayMs + shift cover [D + shift, D + shift + 24 h)
// for the UTC days D, shift in (0, 24 h) the time of local midnight after
// UTC midnight (23 h for UTC+1). The span encodes the shift, so that
// meter_agg and meter_folds hold them without a new column, each shift's
// rows lie together in ClickHouse's order, and the folds of each shift
// are painted apart (paint) like those of hours and UTC days.
//
// A meter keeps the shifts its queries ask for: a query with DAY windows
// records in FoldsTable each shift its zone's offsets need (a row of that
// span with from_ms = to_ms = 0, built_ms the time asked), at most
// maxShifts per meter; the next pass backfills them, and every pass after
// folds the shifted days completed since and refolds those with late
// events, as it does UTC days. They are dropped with the meter's other
// aggregates. A query before that reads hour rows, as before: exact, only
// slower.
const (
	// maxShifts bounds the shifts a meter keeps: a zone with summer time
	// needs two, and a meter's queries use few zones.
	maxShifts = 8
	// shiftStep: every offset of a zone in use today is a whole number
	// of quarter hours; others (local mean time before 1900) are not kept.
	shiftStep = 15 * 60 * 1000
)

// spanLen is the length of a row of span s (an hour, or a day: UTC or
// shifted).
func spanLen(s int64) int64 {
	if s >= dayMs {
		return dayMs
	}
	return s
}

// spanShift is how long after UTC midnight the rows of span s start.
func spanShift(s int64) int64 {
	if s > dayMs {
		return s - dayMs
	}
	return 0
}

// floorSpan is the start of the row of span s holding t.
func floorSpan(t, s int64) int64 {
	sh := spanShift(s)
	return floorTo(t-sh, spanLen(s)) + sh
}

// ceilSpan is the first row start of span s at or after t.
func ceilSpan(t, s int64) int64 {
	sh := spanShift(s)
	return ceilTo(t-sh, spanLen(s)) + sh
}

// shiftSpan is the span of the days starting at local midnight of a zone
// offset seconds from UTC (dayMs itself for a whole number of days).
func shiftSpan(offset int) int64 {
	o := -int64(offset) * 1000
	return dayMs + o - floorTo(o, dayMs)
}

// wantedSpans are the shifted spans p's DAY windows read whole days of: one
// per offset of p's zone that holds for a day or more of p's range.
func wantedSpans(p Params, segs []segment) []int64 {
	if p.WindowSize != Day {
		return nil
	}
	var out []int64
	start := p.From.UnixMilli()
	for i, s := range segs {
		end := s.until
		if i == len(segs)-1 {
			end = p.To.UnixMilli()
		}
		sp := shiftSpan(s.offset)
		if end-start >= dayMs && int64(s.offset)*1000%shiftStep == 0 && sp != dayMs && !slices.Contains(out, sp) {
			out = append(out, sp)
		}
		start = end
	}
	return out
}

// toAsk are the spans of wanted not asked yet, within maxShifts.
func toAsk(asked map[int64]bool, wanted []int64) []int64 {
	var out []int64
	for _, s := range wanted {
		if !asked[s] && len(asked)+len(out) < maxShifts {
			out = append(out, s)
		}
	}
	return out
}

// askShifts records that queries want the day rows of spans of def.
func askShifts(ctx context.Context, q querier, def string, spans []int64, now int64) error {
	for _, s := range spans {
		if _, err := q.ExecContext(ctx, `INSERT INTO `+FoldsTable+` (def, span_ms, from_ms, to_ms, version, built_ms, next_ms) SELECT ?, ?, 0, 0, ?, ?, 0`,
			def, s, uint64(now), now); err != nil {
			return fmt.Errorf("ask for shifted days: %w", err)
		}
	}
	return nil
}

// shiftsOf are def's shifted spans asked for, each with whether it has
// folds (false: to backfill).
func shiftsOf(ctx context.Context, q querier, def string) (map[int64]bool, error) {
	rows, err := q.QueryContext(ctx, `SELECT span_ms, max(to_ms - from_ms) FROM `+FoldsTable+` WHERE def = ? AND span_ms > ? GROUP BY span_ms`, def, dayMs)
	if err != nil {
		return nil, fmt.Errorf("meter shifts: %w", err)
	}
	defer rows.Close()
	out := map[int64]bool{}
	for rows.Next() {
		var s, w int64
		if err := rows.Scan(&s, &w); err != nil {
			return nil, fmt.Errorf("meter shifts: %w", err)
		}
		out[s] = w > 0
	}
	return out, rows.Err()
}

// foldShifts folds m's shifted days in a pass that folds up to cur (an
// hour): the backfill of shifts asked for since the last pass (last, ok),
// and for the others the days completed since it and those with an hour
// in dirty. first is the meter's first event (any false: none).
func foldShifts(ctx context.Context, cfg FoldConfig, ad aggDialect, m *Meter, def string, last fold, ok bool, dirty map[int64]bool,
	first func() (int64, bool, error), cur, version, built int64) error {
	shifts, err := shiftsOf(ctx, cfg.DB, def)
	if err != nil {
		return err
	}
	for _, s := range slices.Sorted(maps.Keys(shifts)) {
		days := map[int64]bool{}
		refold := ok && shifts[s]
		if !refold {
			// Backfill, the time before the first event recorded empty.
			f, any, err := first()
			if err != nil {
				return err
			}
			start := floorSpan(cur, s)
			if any {
				start = min(floorSpan(f, s), start)
			}
			if err := record(ctx, cfg, def, []fold{{span: s, from: floorSpan(minTime.UnixMilli(), s), to: start, version: version, built: built}}); err != nil {
				return err
			}
			for d := start; d+dayMs <= cur; d += dayMs {
				days[d] = true
			}
		} else {
			for d := floorSpan(last.next, s); d+dayMs <= cur; d += dayMs {
				days[d] = true
			}
			for h := range dirty {
				// An hour lies in one shifted day, or two at :30 and :45.
				for _, d := range []int64{floorSpan(h, s), floorSpan(h+hourMs-1, s)} {
					if d+dayMs <= cur {
						days[d] = true
					}
				}
			}
		}
		// Consecutive days in one statement, as hours are folded.
		var runs [][2]int64
		for _, d := range slices.Sorted(maps.Keys(days)) {
			if n := len(runs); n > 0 && runs[n-1][1] == d && d-runs[n-1][0] < maxFoldHours*hourMs {
				runs[n-1][1] = d + dayMs
			} else {
				runs = append(runs, [2]int64{d, d + dayMs})
			}
		}
		for _, r := range runs {
			if err := foldRange(ctx, cfg, ad, m, def, s, r[0], r[1], version, built, refold && r[0] < last.next); err != nil {
				return err
			}
		}
	}
	return nil
}
