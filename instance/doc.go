// Package instance assembles a running apimeter from a plain Config (the
// values of apimeter serve's flags): it opens the store (the embedded
// DuckDB file, or ClickHouse), loads the fingerprint key and builds the
// scrubber, sets up identity (JWT, alias table, company rule, counters in
// memory or on Redis) and the key check, builds the server with its
// Metrics API, dashboard and /metrics, starts the daily pass and the
// readiness checks, and listens. Start returns an Instance, which serves
// until Close; Close stops accepting requests, lets running ones finish,
// and only then closes the store, which writes what it has queued.
//
// Serve, Consume and RunGateway are what apimeter serve, consume and
// gateway run; the command only parses flags. Tests and the benchmark
// harnesses (internal/bench) start instances the same way.
package instance
