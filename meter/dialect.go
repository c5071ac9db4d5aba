package meter

import (
	"fmt"
	"time"
)

// DuckDB is the embedded store's dialect.
type DuckDB struct {
	// SubjectEvents, if positive, is the most usage events of the
	// subjects a query names that it reads, within the hours it would
	// read from the meter's hour rows, instead of those rows
	// (subjecthours.go); by default never, as DuckDB skips other
	// subjects' hour rows by their order.
	SubjectEvents int
}

func (DuckDB) UsageTable() string { return "usage_events" }
func (DuckDB) CallTable() string  { return "events" }
func (DuckDB) CallTime() string   { return "epoch_ms(ts)" }
func (DuckDB) CallRange(from, to time.Time) (string, []any) {
	return "ts >= ? AND ts < ?", []any{from.UTC(), to.UTC()}
}

// NumAt: NaN (not a number) stored is NULL read; nullif takes x once, as
// DuckDB would compute it again for each mention.
func (DuckDB) NumAt() string {
	return "nullif(data_num[list_position(data_keys, ?)], 'NaN'::DOUBLE)"
}
func (DuckDB) StrAt() string                 { return "data_str[list_position(data_keys, ?)]" }
func (DuckDB) IDiv(a, b string) string       { return "(" + a + " // " + b + ")" }
func (DuckDB) Double(x string) string        { return "CAST(" + x + " AS DOUBLE)" }
func (DuckDB) Text(x string) string          { return "CAST(" + x + " AS VARCHAR)" }
func (DuckDB) CountDistinct(x string) string { return "count(DISTINCT " + x + ")" }
func (DuckDB) ArgMax(x, by string) string    { return "arg_max(" + x + ", " + by + ")" }

// ClickHouse is the scale-out store's dialect (ClickHouse 18.16 and later:
// no JSON functions are needed, as data is flattened at ingest). Tables
// are read with FINAL, so that an event stored twice by two collectors is
// counted once, as the Metrics API counts it.
type ClickHouse struct {
	// SubjectEvents is the most usage events of the subjects a query
	// names that it reads, within the hours it would read from the
	// meter's hour rows, instead of those rows (subjecthours.go); 0 means
	// as many as cost what those hour rows do, a negative value never.
	SubjectEvents int
}

func (ClickHouse) UsageTable() string { return "usage_events FINAL" }
func (ClickHouse) CallTable() string  { return "events FINAL" }
func (ClickHouse) CallTime() string   { return "intDiv(ts_us, 1000)" }
func (ClickHouse) CallRange(from, to time.Time) (string, []any) {
	// ts (seconds) prunes partitions and the index; ts_us is exact.
	return "ts >= toDateTime(?, 'UTC') AND ts <= toDateTime(?, 'UTC') AND ts_us >= ? AND ts_us < ?",
		[]any{from.Unix(), to.Unix(), from.UnixMicro(), to.UnixMicro()}
}
func (ClickHouse) NumAt() string {
	return "if(indexOf(data_keys, ?) > 0 AND NOT isNaN(data_num[indexOf(data_keys, ?)]), toNullable(data_num[indexOf(data_keys, ?)]), NULL)"
}
func (ClickHouse) StrAt() string {
	return "if(indexOf(data_keys, ?) > 0, toNullable(data_str[indexOf(data_keys, ?)]), NULL)"
}
func (ClickHouse) IDiv(a, b string) string       { return "intDiv(" + a + ", " + b + ")" }
func (ClickHouse) Double(x string) string        { return "toFloat64(" + x + ")" }
func (ClickHouse) Text(x string) string          { return "toString(" + x + ")" }
func (ClickHouse) CountDistinct(x string) string { return "uniqExact(" + x + ")" }
func (ClickHouse) ArgMax(x, by string) string    { return "argMax(" + x + ", " + by + ")" }

// The aggregates' SQL (agg.go) of each engine.

func (DuckDB) plain() Dialect                 { return DuckDB{} }
func (DuckDB) dedupe(inner string) string     { return inner }
func (DuckDB) needsIDs() bool                 { return false }
func (DuckDB) transactional() bool            { return true }
func (DuckDB) bigint(x string) string         { return "CAST(" + x + " AS BIGINT)" }
func (DuckDB) intN(x string) string           { return "CAST(" + x + " AS BIGINT)" }
func (DuckDB) numN(x string) string           { return "CAST(" + x + " AS DOUBLE)" }
func (DuckDB) textN(x string) string          { return "CAST(" + x + " AS VARCHAR)" }
func (DuckDB) nullText() string               { return "CAST(NULL AS VARCHAR)" }
func (DuckDB) deleteWhere(t, c string) string { return "DELETE FROM " + t + " WHERE " + c }
func (DuckDB) ingestedSince(call bool, ms int64) (string, []any) {
	if call {
		return "ingested_at >= ?", []any{time.UnixMilli(ms).UTC()}
	}
	return "ingested_ms >= ?", []any{ms}
}

// clickHousePlain reads ClickHouse's tables as stored, without FINAL: the
// aggregates' readers of narrow ranges dedupe by event (LIMIT 1 BY),
// which costs far less than FINAL, which merges every part of the
// partitions read.
type clickHousePlain struct{ ClickHouse }

func (clickHousePlain) UsageTable() string { return "usage_events" }
func (clickHousePlain) CallTable() string  { return "events" }

func (ClickHouse) plain() Dialect { return clickHousePlain{} }
func (ClickHouse) dedupe(inner string) string {
	return "SELECT * FROM (" + inner + ") AS dd LIMIT 1 BY src, eid"
}
func (ClickHouse) needsIDs() bool                 { return true }
func (ClickHouse) transactional() bool            { return false }
func (ClickHouse) bigint(x string) string         { return "toInt64(" + x + ")" }
func (ClickHouse) intN(x string) string           { return "CAST(" + x + " AS Nullable(Int64))" }
func (ClickHouse) numN(x string) string           { return "CAST(" + x + " AS Nullable(Float64))" }
func (ClickHouse) textN(x string) string          { return "CAST(" + x + " AS Nullable(String))" }
func (ClickHouse) nullText() string               { return "CAST(NULL AS Nullable(String))" }
func (ClickHouse) deleteWhere(t, c string) string { return "ALTER TABLE " + t + " DELETE WHERE " + c }

// ingestedSince: the events table keeps whole seconds, so a call of the
// second of ms counts as new.
func (ClickHouse) ingestedSince(call bool, ms int64) (string, []any) {
	if call {
		return "ingested_at >= toDateTime(?, 'UTC')", []any{ms / 1000}
	}
	return "ingested_ms >= ?", []any{ms}
}

func (DuckDB) timeTerm(call bool, from, to int64) string {
	if call {
		return fmt.Sprintf("ts >= make_timestamp(%d) AND ts < make_timestamp(%d)", from*1000, to*1000)
	}
	return fmt.Sprintf("ts_ms >= %d AND ts_ms < %d", from, to)
}

func (ClickHouse) timeTerm(call bool, from, to int64) string {
	if call {
		return fmt.Sprintf("ts_us >= %d AND ts_us < %d", from*1000, to*1000)
	}
	return fmt.Sprintf("ts_ms >= %d AND ts_ms < %d", from, to)
}

func (DuckDB) usageHours() string     { return "" }
func (DuckDB) bucketLists() bool      { return false }
func (ClickHouse) usageHours() string { return "usage_hours" }
func (ClickHouse) bucketLists() bool  { return true }
