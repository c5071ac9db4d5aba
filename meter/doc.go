// Package meter is apimeter's usage metering, compatible with OpenMeter's
// API: usage events in as CloudEvents (POST /api/v1/events), meters that
// aggregate them (SUM, COUNT, UNIQUE_COUNT, AVG, MIN, MAX, LATEST over a
// JSONPath into the event's data), and meter queries by window, time zone,
// subject and group. Every stored API call is a usage event too (type
// "api-call"), read from the events table rather than stored twice.
//
// The stores (store/duckdb, store/clickhouse) keep the usage events and the
// meter definitions; this package decodes, validates and renders the one
// SQL query per meter query that both engines answer alike (Dialect).
package meter
