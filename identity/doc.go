// Package identity decides who made each API call and counts usage per
// customer. A Resolver fills in user, company and API key from what an event
// carries (explicit ids, the alias table, a JWT claim, company rules) before
// secrets are scrubbed; a Meter counts calls, errors and bytes per user,
// company and API key for each billing period. Aliases and counters live
// behind two small interfaces with an embedded backend (DuckDB table plus
// in-memory counters rebuilt from the events table) and a Redis backend, so
// that several collectors can share them. Keys are only ever held as SHA-256.
package identity
