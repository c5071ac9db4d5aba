package clickhouse

import "github.com/apimeter/apimeter/rollup"

// The rollup tables (package rollup) are SummingMergeTree tables that
// materialized views on the events table fill as events are inserted, so
// they are always current: the Metrics API reads whole days and hours from
// them and only partial hours at the edges from the events table. Their
// migrations follow the others; each folds the events already stored.
//
// A view sees every INSERT, so an event is summed once per INSERT that
// carries it. The set in front of the table keeps a redelivery to the same
// process out; a redelivery that reaches another process within the
// horizon is collapsed by the events table (FINAL) but counted twice by
// the rollups (docs/rollups.md).
func rollupMigrations() []string {
	var m []string
	for _, f := range rollup.Families {
		m = append(m, rollup.ClickHouseSchema(f)...)
	}
	return m
}

// rollupTables are the tables that retention drops partitions of along
// with the events'.
func rollupTables() []string {
	var out []string
	for _, f := range rollup.Families {
		for _, g := range rollup.Grains {
			out = append(out, f.Table(g))
		}
	}
	return out
}
