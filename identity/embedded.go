package identity

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/store/detail"
)

// DefaultExpiredRetention is how long an expired alias is kept, so that
// calls made before it expired but delivered late are still attributed.
const DefaultExpiredRetention = 30 * 24 * time.Hour

const aliasSchema = `
CREATE TABLE IF NOT EXISTS identity_aliases (
  org VARCHAR NOT NULL,
  env VARCHAR NOT NULL,
  key_hash VARCHAR NOT NULL,
  user_id VARCHAR NOT NULL,
  company_id VARCHAR NOT NULL,
  expires_at TIMESTAMP,
  created_at TIMESTAMP NOT NULL,
  PRIMARY KEY (org, env, key_hash)
);`

// EmbeddedOptions configure an Embedded backend.
type EmbeddedOptions struct {
	// Periods are the billing periods counters are rebuilt into.
	Periods Periods
	// ExpiredRetention is how long an expired alias is still answered.
	// Zero means DefaultExpiredRetention.
	ExpiredRetention time.Duration
}

// Embedded keeps the alias table in a table of the events database and the
// usage counters in memory. The events table is the source of truth for
// usage: at open the counters are rebuilt from it, then a Meter keeps them
// current from newly stored events. Aliases are written through to the
// table and served from memory, so a process owning the database file (as
// DuckDB requires) answers lookups without I/O.
type Embedded struct {
	db        *sql.DB
	retention time.Duration

	mu      sync.RWMutex
	aliases map[AliasRef]Alias

	cmu    sync.Mutex
	counts map[counterScope]map[string]Counts
}

// counterScope groups counters so that a usage report reads one map.
type counterScope struct {
	Org, Env, Period string
	Dim              Dimension
}

// OpenEmbedded creates the alias table in db if needed, loads it, and
// rebuilds the usage counters from db's events table.
func OpenEmbedded(ctx context.Context, db *sql.DB, opts EmbeddedOptions) (*Embedded, error) {
	if opts.ExpiredRetention == 0 {
		opts.ExpiredRetention = DefaultExpiredRetention
	}
	if _, err := db.ExecContext(ctx, aliasSchema); err != nil {
		return nil, fmt.Errorf("create alias table: %w", err)
	}
	e := &Embedded{db: db, retention: opts.ExpiredRetention, aliases: map[AliasRef]Alias{}}
	// Aliases past their retention are dropped at start-up, as Redis drops
	// them by TTL; until then lookups skip them.
	if _, err := db.ExecContext(ctx, `DELETE FROM identity_aliases WHERE expires_at < ?`, time.Now().UTC().Add(-opts.ExpiredRetention)); err != nil {
		return nil, fmt.Errorf("drop expired aliases: %w", err)
	}
	rows, err := db.QueryContext(ctx, `SELECT org, env, key_hash, user_id, company_id, expires_at, created_at FROM identity_aliases`)
	if err != nil {
		return nil, fmt.Errorf("load aliases: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a Alias
		var exp sql.NullTime
		if err := rows.Scan(&a.Org, &a.Env, &a.KeyHash, &a.UserID, &a.CompanyID, &exp, &a.CreatedAt); err != nil {
			return nil, fmt.Errorf("load aliases: %w", err)
		}
		if exp.Valid {
			a.ExpiresAt = exp.Time.UTC()
		}
		a.CreatedAt = a.CreatedAt.UTC()
		e.aliases[AliasRef{a.Org, a.Env, a.KeyHash}] = a
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load aliases: %w", err)
	}
	counts, err := RebuildCounters(ctx, db, opts.Periods)
	if err != nil {
		return nil, err
	}
	e.counts = map[counterScope]map[string]Counts{}
	e.addLocked(counts)
	return e, nil
}

// RebuildCounters computes every usage counter from the events table of
// db. It aggregates in SQL by 15-minute bucket (every time zone's midnight
// falls on one) and folds the buckets into periods.
func RebuildCounters(ctx context.Context, db *sql.DB, ps Periods) (map[CounterKey]Counts, error) {
	return RebuildCountersFrom(ctx, db, rebuildSQL, ps)
}

// rebuildSQL sums the events per org, env, quarter hour (bucket, in units of
// 900 s since the epoch), user, company and API key: calls, errors, bytes.
const rebuildSQL = `
SELECT org, env, CAST(floor(epoch(ts) / 900) AS BIGINT) AS bucket, user_id, company_id, api_key_id,
  CAST(sum(weight) AS BIGINT),
  CAST(sum(CASE WHEN ` + detail.IsErrorSQL + ` THEN weight ELSE 0 END) AS BIGINT),
  CAST(sum(weight * (coalesce(req_size, 0) + coalesce(resp_size, 0))) AS BIGINT)
FROM events GROUP BY ALL`

// RebuildCountersFrom is RebuildCounters with the store's own SQL for the
// sums (the columns of rebuildSQL, in its order).
func RebuildCountersFrom(ctx context.Context, db *sql.DB, query string, ps Periods) (map[CounterKey]Counts, error) {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("rebuild usage counters: %w", err)
	}
	defer rows.Close()
	out := map[CounterKey]Counts{}
	var last Period
	for rows.Next() {
		var org, env, user, company, key string
		var bucket int64
		var c Counts
		if err := rows.Scan(&org, &env, &bucket, &user, &company, &key, &c.Calls, &c.Errors, &c.Bytes); err != nil {
			return nil, fmt.Errorf("rebuild usage counters: %w", err)
		}
		t := time.Unix(bucket*900, 0)
		if !last.Contains(t) {
			last = ps.Of(t)
		}
		for d, id := range map[Dimension]string{ByUser: user, ByCompany: company, ByAPIKey: key} {
			k := CounterKey{Org: org, Env: env, Period: last.Label, Dim: d, ID: id}
			v := out[k]
			v.add(c)
			out[k] = v
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("rebuild usage counters: %w", err)
	}
	return out, nil
}

func (e *Embedded) live(a Alias, now time.Time) bool {
	return a.ExpiresAt.IsZero() || now.Before(a.ExpiresAt.Add(e.retention))
}

// PutAlias implements Aliases.
func (e *Embedded) PutAlias(ctx context.Context, a Alias) error {
	if err := a.Validate(); err != nil {
		return err
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = time.Now()
	}
	a.CreatedAt = a.CreatedAt.UTC().Truncate(time.Microsecond)
	var exp any
	if !a.ExpiresAt.IsZero() {
		a.ExpiresAt = a.ExpiresAt.UTC().Truncate(time.Microsecond)
		exp = a.ExpiresAt
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, err := e.db.ExecContext(ctx, `INSERT OR REPLACE INTO identity_aliases (org, env, key_hash, user_id, company_id, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		a.Org, a.Env, a.KeyHash, a.UserID, a.CompanyID, exp, a.CreatedAt)
	if err != nil {
		return fmt.Errorf("store alias: %w", err)
	}
	e.aliases[AliasRef{a.Org, a.Env, a.KeyHash}] = a
	return nil
}

// GetAlias implements Aliases.
func (e *Embedded) GetAlias(ctx context.Context, org, env, keyHash string) (Alias, error) {
	e.mu.RLock()
	a, ok := e.aliases[AliasRef{org, env, keyHash}]
	e.mu.RUnlock()
	if !ok || !e.live(a, time.Now()) {
		return Alias{}, apimeter.ErrNotFound
	}
	return a, nil
}

// DeleteAlias implements Aliases.
func (e *Embedded) DeleteAlias(ctx context.Context, org, env, keyHash string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	ref := AliasRef{org, env, keyHash}
	if _, ok := e.aliases[ref]; !ok {
		return apimeter.ErrNotFound
	}
	if _, err := e.db.ExecContext(ctx, `DELETE FROM identity_aliases WHERE org = ? AND env = ? AND key_hash = ?`, org, env, keyHash); err != nil {
		return fmt.Errorf("delete alias: %w", err)
	}
	delete(e.aliases, ref)
	return nil
}

// UserAliases implements Aliases.
func (e *Embedded) UserAliases(ctx context.Context, org, env, userID string) ([]Alias, error) {
	now := time.Now()
	var out []Alias
	e.mu.RLock()
	for ref, a := range e.aliases {
		if ref.Org == org && ref.Env == env && a.UserID == userID && e.live(a, now) {
			out = append(out, a)
		}
	}
	e.mu.RUnlock()
	sortAliases(out)
	return out, nil
}

func sortAliases(as []Alias) {
	sort.Slice(as, func(i, j int) bool {
		if !as[i].CreatedAt.Equal(as[j].CreatedAt) {
			return as[i].CreatedAt.Before(as[j].CreatedAt)
		}
		return as[i].KeyHash < as[j].KeyHash
	})
}

// LookupAliases implements Aliases.
func (e *Embedded) LookupAliases(ctx context.Context, refs []AliasRef, out []Alias) error {
	if len(out) != len(refs) {
		return errors.New("lookup aliases: out and refs differ in length")
	}
	now := time.Now()
	e.mu.RLock()
	for i, r := range refs {
		a, ok := e.aliases[r]
		if ok && e.live(a, now) {
			out[i] = a
		} else {
			out[i] = Alias{}
		}
	}
	e.mu.RUnlock()
	return nil
}

// AddUsage implements Counters.
func (e *Embedded) AddUsage(ctx context.Context, deltas map[CounterKey]Counts) error {
	e.cmu.Lock()
	e.addLocked(deltas)
	e.cmu.Unlock()
	return nil
}

func (e *Embedded) addLocked(deltas map[CounterKey]Counts) {
	for k, d := range deltas {
		sc := counterScope{k.Org, k.Env, k.Period, k.Dim}
		m := e.counts[sc]
		if m == nil {
			m = map[string]Counts{}
			e.counts[sc] = m
		}
		v := m[k.ID]
		v.add(d)
		m[k.ID] = v
	}
}

// Usage implements Counters.
func (e *Embedded) Usage(ctx context.Context, org, env, period string, dim Dimension) ([]UsageRow, error) {
	var out []UsageRow
	e.cmu.Lock()
	for id, c := range e.counts[counterScope{org, env, period, dim}] {
		out = append(out, UsageRow{ID: id, Counts: c})
	}
	e.cmu.Unlock()
	return out, nil
}

// Counter implements Counters.
func (e *Embedded) Counter(ctx context.Context, k CounterKey) (Counts, error) {
	e.cmu.Lock()
	c := e.counts[counterScope{k.Org, k.Env, k.Period, k.Dim}][k.ID]
	e.cmu.Unlock()
	return c, nil
}
