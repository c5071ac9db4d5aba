// Package rollup defines apimeter's rollup tables: events summed per UTC
// hour and per UTC day by the columns the dashboard and the usage API group
// and filter on (user, company, API key, API with route, verb and status),
// so that the Metrics API answers them without reading every event.
//
// A row of a rollup table stands for the events of one period with the same
// org, env and key columns: weight is the sum of their weights (calls),
// err_weight the part of it with an error status, lat_sum the sum of
// latency × weight. Families with Latency keep latency_ms as a key as well:
// a row then holds one latency value and its summed weight, an exact
// histogram, so that percentiles, min and max stay exact.
//
// The embedded store (store/duckdb) folds complete periods in a background
// pass and reads raw events for the rest (package stats decides which); the
// ClickHouse store fills the same tables through materialized views.
package rollup

import (
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/apimeter/apimeter/store/detail"
)

// Grain is the period of a rollup table.
type Grain string

const (
	Hour Grain = "hour"
	Day  Grain = "day"
)

// Family is a set of key columns, kept per hour and per day.
type Family struct {
	Name string
	// Keys are columns of the events table.
	Keys []string
	// Latency keeps latency_ms as a key (an exact histogram).
	Latency bool
	// From names a family whose keys include all of this one's: the
	// embedded store folds this family's hours from that family's hour
	// rows instead of reading the events again (the sums are the same).
	From string
	// Rank, when set, is a key column whose values the embedded store
	// ranks by calls in every period it folds (see TopTable).
	Rank string
}

// Families are the rollups, in the order the planner prefers them (fewest
// rows first): the first that can answer a query is read.
var Families = []Family{
	{Name: "api", Keys: []string{"api_name", "route", "method", "status"}, From: "api_latency"},
	{Name: "company", Keys: []string{"company_id"}, From: "user", Rank: "company_id"},
	{Name: "user", Keys: []string{"user_id", "company_id"}, From: "key", Rank: "user_id"},
	{Name: "key", Keys: []string{"api_key_id", "user_id", "company_id"}, Rank: "api_key_id"},
	{Name: "api_latency", Keys: []string{"api_name", "route", "method", "status"}, Latency: true},
}

// FoldOrder are the Families in an order that folds each From family
// before the families folded from it.
func FoldOrder() []Family {
	var out []Family
	done := map[string]bool{}
	for len(out) < len(Families) {
		before := len(out)
		for _, f := range Families {
			if !done[f.Name] && (f.From == "" || done[f.From]) {
				out = append(out, f)
				done[f.Name] = true
			}
		}
		if len(out) == before {
			panic("rollup: a family's From names no family, or a cycle")
		}
	}
	return out
}

// Grains are the periods every family is kept at, shortest first.
var Grains = []Grain{Hour, Day}

// Table is the family's table at grain g.
func (f Family) Table(g Grain) string { return "rollup_" + f.Name + "_" + string(g) }

// Columns are the family's key columns, latency_ms last when kept.
func (f Family) Columns() []string {
	cols := append([]string{}, f.Keys...)
	if f.Latency {
		cols = append(cols, "latency_ms")
	}
	return cols
}

// Has says column is a key of f (org, env and the period are keys of all).
func (f Family) Has(column string) bool {
	if column == "org" || column == "env" {
		return true
	}
	for _, k := range f.Columns() {
		if k == column {
			return true
		}
	}
	return false
}

// PeriodsTable records, on the embedded store, the periods folded into the
// rollup tables: (grain, start, built_at), built_at being a time no later
// than the ingest time of any event the fold did not see.
const PeriodsTable = "rollup_periods"

// columnTypes are the DuckDB types of the key columns.
var duckTypes = map[string]string{"status": "INTEGER", "latency_ms": "DOUBLE"}

// DuckDBSchema creates the rollup tables of the embedded store.
func DuckDBSchema() string {
	var sb strings.Builder
	for _, f := range Families {
		for _, g := range Grains {
			fmt.Fprintf(&sb, "CREATE TABLE IF NOT EXISTS %s (\n  org VARCHAR NOT NULL,\n  env VARCHAR NOT NULL,\n  ts TIMESTAMP NOT NULL,\n", f.Table(g))
			for _, c := range f.Columns() {
				t := duckTypes[c]
				if t == "" {
					t = "VARCHAR"
				}
				fmt.Fprintf(&sb, "  %s %s NOT NULL,\n", c, t)
			}
			sb.WriteString("  weight BIGINT NOT NULL,\n  err_weight BIGINT NOT NULL,\n  lat_sum DOUBLE NOT NULL,\n  max_weight BIGINT NOT NULL\n);\n")
		}
	}
	sb.WriteString("CREATE TABLE IF NOT EXISTS " + TopTable + " (\n  org VARCHAR NOT NULL,\n  env VARCHAR NOT NULL,\n  grain VARCHAR NOT NULL,\n  ts TIMESTAMP NOT NULL,\n  dim VARCHAR NOT NULL,\n  value VARCHAR NOT NULL,\n  weight BIGINT NOT NULL,\n  max_weight BIGINT NOT NULL,\n  rk INTEGER NOT NULL\n);\n")
	sb.WriteString("CREATE TABLE IF NOT EXISTS " + CallsTable + " (\n  org VARCHAR NOT NULL,\n  env VARCHAR NOT NULL,\n  ts TIMESTAMP NOT NULL,\n  ck BIGINT NOT NULL,\n  company_id VARCHAR NOT NULL,\n  route VARCHAR NOT NULL,\n  api_name VARCHAR NOT NULL,\n  api_key_id VARCHAR NOT NULL,\n  status INTEGER NOT NULL,\n  latency_ms DOUBLE NOT NULL,\n  weight BIGINT NOT NULL\n);\n")
	sb.WriteString("CREATE TABLE IF NOT EXISTS " + PeriodsTable + " (\n  grain VARCHAR NOT NULL,\n  start TIMESTAMP NOT NULL,\n  built_at TIMESTAMP NOT NULL,\n  PRIMARY KEY (grain, start)\n);\n")
	return sb.String()
}

// DuckDBFoldHours is the INSERT that folds the events of [$1, $2) into f's
// hour table, read from the hour table of f.From when f has one (folded
// before it in the same transaction, see FoldOrder).
//
// The rows of a fold go in sorted by day (month in the day tables), then by
// the family's keys: a filter on the first key (one user, one company, one
// API key) skips most of a fold's row groups by their min and max, and so
// does a time range shorter than the fold (the edges of a range, the last
// 24 hours), as when the background pass folds one hour or day at a time.
func DuckDBFoldHours(f Family) string {
	cols := strings.Join(f.Columns(), ", ")
	if f.From != "" {
		return duckDBFoldRows(f, Hour, Family{Name: f.From}.Table(Hour))
	}
	return fmt.Sprintf(`INSERT INTO %s (org, env, ts, %s, weight, err_weight, lat_sum, max_weight)
SELECT org, env, date_trunc('hour', ts) AS period, %s, SUM(weight), SUM(CASE WHEN %s THEN weight ELSE 0 END), SUM(latency_ms * weight), MAX(weight)
FROM events WHERE ts >= $1 AND ts < $2
GROUP BY org, env, period, %s
ORDER BY org, env, date_trunc('day', period), %s, period`, f.Table(Hour), cols, cols, detail.IsErrorSQL, cols, cols)
}

// DuckDBFoldDays is the INSERT that folds f's hour rows of [$1, $2) into
// its day table.
func DuckDBFoldDays(f Family) string { return duckDBFoldRows(f, Day, f.Table(Hour)) }

// duckDBFoldRows folds the rollup rows of table in [$1, $2) into f's g
// table.
func duckDBFoldRows(f Family, g Grain, table string) string {
	cols := strings.Join(f.Columns(), ", ")
	major := "day"
	if g == Day {
		major = "month"
	}
	return fmt.Sprintf(`INSERT INTO %s (org, env, ts, %s, weight, err_weight, lat_sum, max_weight)
SELECT org, env, date_trunc('%s', ts) AS period, %s, SUM(weight), SUM(err_weight), SUM(lat_sum), MAX(max_weight)
FROM %s WHERE ts >= $1 AND ts < $2
GROUP BY org, env, period, %s
ORDER BY org, env, date_trunc('%s', period), %s, period`, f.Table(g), cols, g, cols, table, cols, major, cols)
}

// ClickHouse: the rollup tables are SummingMergeTree tables fed by
// materialized views on the events table, so they are current with every
// INSERT. Their period column is t and their sums calls and err_calls (a
// view's SELECT cannot alias an expression of ts or weight back to the same
// name); heavy counts the events of weight > 1, which says whether an
// answer is weighted (a summing table keeps no max).
var chTypes = map[string]string{"status": "Int32", "latency_ms": "Float64"}

// ClickHouseSchema are the statements that create f's tables and views and
// fold the events already stored into them (run once, before the views
// see any insert that the fold also reads, i.e. at migration).
func ClickHouseSchema(f Family) []string {
	var out []string
	cols := strings.Join(f.Columns(), ", ")
	for _, g := range Grains {
		var sb strings.Builder
		fmt.Fprintf(&sb, "CREATE TABLE IF NOT EXISTS %s (\n  org String,\n  env String,\n  t DateTime('UTC'),\n", f.Table(g))
		for _, c := range f.Columns() {
			t := chTypes[c]
			if t == "" {
				t = "String"
			}
			fmt.Fprintf(&sb, "  %s %s,\n", c, t)
		}
		fmt.Fprintf(&sb, "  calls Int64,\n  err_calls Int64,\n  lat_sum Float64,\n  heavy UInt64\n) ENGINE = SummingMergeTree\nPARTITION BY toYYYYMM(t)\nORDER BY (org, env, t, %s)", cols)
		out = append(out, sb.String())
		start := "toStartOfHour(ts)"
		if g == Day {
			start = "toStartOfDay(ts)"
		}
		sel := fmt.Sprintf("SELECT org, env, %s AS t, %s, sum(weight) AS calls, sumIf(weight, %s) AS err_calls, sum(latency_ms * weight) AS lat_sum, countIf(weight > 1) AS heavy FROM events GROUP BY org, env, t, %s",
			start, cols, detail.IsErrorSQL, cols)
		out = append(out, fmt.Sprintf("CREATE MATERIALIZED VIEW IF NOT EXISTS %s_mv TO %s AS %s", f.Table(g), f.Table(g), sel))
		// The events stored before the view existed; FINAL counts a
		// redelivered event once.
		out = append(out, fmt.Sprintf("INSERT INTO %s (org, env, t, %s, calls, err_calls, lat_sum, heavy) %s",
			f.Table(g), cols, strings.Replace(sel, "FROM events", "FROM events FINAL", 1)))
	}
	return out
}

// TopTable holds, on the embedded store, the TopN values of each ranked
// column (Family.Rank) with the most calls in each folded period of each
// org and env, ranked 1..TopN, and at rank TopN+1 the next value: its
// calls bound those of every value not listed. A row of rank 0 (org and
// env empty) marks a period as ranked, with or without events.
//
// They let the Metrics API answer "the top N users (companies, API keys)
// by calls" without summing every user's rows of the range: the listed
// calls and the bounds show which few values can be in the top N at all,
// and only those are summed exactly (package stats, runRanked).
const TopTable = "rollup_top"

// TopN is how many values per period TopTable lists.
const TopN = 100

// DuckDBRank is the INSERT that ranks the values of f.Rank in f's g rows
// of [$1, $2) into TopTable, and marks those periods ranked ($3 is the
// step of g as an interval, "1 hour" or "1 day"). Values with the same
// calls rank in any order: the bound holds whichever is listed, and
// leaving out the tie-break on the value made the ranking a quarter of
// its cost.
func DuckDBRank(f Family, g Grain) string {
	return fmt.Sprintf(`INSERT INTO %[1]s (org, env, grain, ts, dim, value, weight, max_weight, rk)
SELECT org, env, '%[2]s', ts, '%[3]s', v, w, mw, rk FROM (
  SELECT org, env, ts, %[3]s AS v, SUM(weight) AS w, MAX(max_weight) AS mw,
    row_number() OVER (PARTITION BY org, env, ts ORDER BY SUM(weight) DESC) AS rk
  FROM %[4]s WHERE ts >= $1 AND ts < $2 GROUP BY org, env, ts, %[3]s
) WHERE rk <= %[5]d
UNION ALL
SELECT '', '', '%[2]s', generate_series, '%[3]s', '', 0, 0, 0
FROM generate_series($1::TIMESTAMP, $2::TIMESTAMP - $3::INTERVAL, $3::INTERVAL)`, TopTable, g, f.Rank, f.Table(g), TopN+1)
}

// CallsTable holds, on the embedded store, the calls of every folded UTC
// day that have a company, one row per event with the columns a company's
// usage reads (route, API, key, status, latency, weight and the time),
// sorted by day, org, env and then ck, a number derived from the company
// id (CompanyKey). The events table is in ingest order, so one company's
// few thousand calls of a month lie in every one of its row groups and
// reading them decodes the month's columns whole; here they are a few
// runs of rows, and DuckDB skips every row group whose range of ck
// leaves the company out. (The company id itself would not do: DuckDB
// keeps only a short prefix of a string as its row groups' bounds, the
// same for "company-7" and "company-70".)
//
// The table is written with a day's rollups, in the same transaction, so
// it covers exactly the days rollup_periods lists as folded, and late
// events are handled as for every rollup: a reader takes a day from it
// only while the day has no event ingested since it was folded.
const CallsTable = "rollup_company_calls"

// CompanyKey is the ck of CallsTable for a company id: the first 8 bytes
// of its MD5 read as a little-endian integer, what DuckDB's
// md5_number_upper gives, shifted right by one bit to fit a BIGINT
// (database/sql passes no uint64 with the high bit set). DuckDBCopyCalls
// computes it in SQL, readers in Go, so that it is a constant DuckDB
// compares row groups' bounds with.
func CompanyKey(companyID string) int64 {
	sum := md5.Sum([]byte(companyID))
	return int64(binary.LittleEndian.Uint64(sum[:8]) >> 1)
}

// DuckDBCompanyKey is CompanyKey in DuckDB's SQL, of the expression expr.
func DuckDBCompanyKey(expr string) string {
	return "CAST(md5_number_upper(" + expr + ") >> 1 AS BIGINT)"
}

// DuckDBCopyCalls is the INSERT that copies the calls with a company of
// [$1, $2) into CallsTable.
func DuckDBCopyCalls() string {
	return `INSERT INTO ` + CallsTable + ` (org, env, ts, ck, company_id, route, api_name, api_key_id, status, latency_ms, weight)
SELECT org, env, ts, ` + DuckDBCompanyKey("company_id") + ` AS ck, company_id, route, api_name, api_key_id, status, latency_ms, weight
FROM events WHERE ts >= $1 AND ts < $2 AND company_id <> ''
ORDER BY date_trunc('day', ts), org, env, ck, ts`
}
