package clickhouse

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/apimeter/apimeter/meter"
	"github.com/apimeter/apimeter/store/internal/usagecommit"
)

// usageTables hold the usage events (meter.Event) and the meter
// definitions, shared by every collector on the database. A usage event's
// data is flattened at ingest into parallel arrays (key, text, number):
// 18.16 has no JSON functions, and visitParamExtract* cannot tell a nested
// key from a top-level one, so the meters' JSONPaths read the arrays with
// indexOf. Usage events are a ReplacingMergeTree on the whole event, read
// with FINAL, so that one sent to two collectors counts once.
var usageTables = []string{
	`CREATE TABLE IF NOT EXISTS usage_events (
  org String,
  env String,
  type String,
  subject String,
  ts DateTime('UTC'),
  ts_ms Int64,
  source String,
  id String,
  ingested_at DateTime('UTC'),
  data String,
  data_keys Array(String),
  data_str Array(String),
  data_num Array(Float64)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (org, env, type, subject, ts_ms, source, id)`,
	// The newest version of a (org, env, slug) wins; deleted marks a
	// deleted meter.
	`CREATE TABLE IF NOT EXISTS meters (
  org String,
  env String,
  slug String,
  id String,
  body String,
  deleted UInt8,
  version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (org, env, slug)`,
}

// UsageOptions configure a Usage. The zero value is usable.
type UsageOptions struct {
	// DedupeHorizon is how long (source, id) is remembered in front of
	// the table; zero means the store's.
	DedupeHorizon time.Duration
	// MaxGroupRows bounds the rows of one INSERT; zero means 65536.
	MaxGroupRows int
	// FoldInterval is how often the meters' aggregates are brought up to
	// date (FoldMeters); zero means DefaultFoldInterval, a negative value
	// none (tests call FoldMeters).
	FoldInterval time.Duration
	// FoldMargin is how long before a fold pass another collector's
	// commit may still be unseen; zero means DefaultFoldMargin, a
	// negative value none (one collector on the database).
	FoldMargin time.Duration
}

// Usage is the ClickHouse store's meter.Store: the group commit's writer
// goroutine (groupcommit) groups concurrent batches into one INSERT,
// answered once ClickHouse has acknowledged it. Close it before the Store.
type Usage struct {
	st   *Store
	opts UsageOptions

	q *usagecommit.Queue

	// seen maps the hash of (org, env, source, id) to the hour it was
	// ingested; only the writer touches it.
	seen  map[xxh3.Uint128]int32
	sweep time.Time

	// committing is the ingest time (epoch ms) of the commit under way,
	// 0 between commits: a fold pass starts no later (built).
	commitMu   sync.Mutex
	committing int64

	foldMu    sync.Mutex
	stopFolds func()

	closeOnce sync.Once
}

// OpenUsage creates the usage tables if needed, loads the dedupe set and
// starts the usage writer.
func (s *Store) OpenUsage(ctx context.Context, opts UsageOptions) (*Usage, error) {
	if opts.DedupeHorizon == 0 {
		opts.DedupeHorizon = s.opts.DedupeHorizon
	}
	switch {
	case opts.FoldMargin == 0:
		opts.FoldMargin = DefaultFoldMargin
	case opts.FoldMargin < 0:
		opts.FoldMargin = 0
	}
	for _, q := range usageTables {
		if err := s.conn.Exec(ctx, q); err != nil {
			return nil, fmt.Errorf("clickhouse %s: create usage tables: %w", s.addr, err)
		}
	}
	u := &Usage{
		st: s, opts: opts,
		q:     usagecommit.NewQueue(1024),
		seen:  map[xxh3.Uint128]int32{},
		sweep: time.Now(),
	}
	if err := u.openMeterAgg(ctx); err != nil {
		return nil, err
	}
	since := time.Now().Add(-opts.DedupeHorizon).Unix()
	rows, err := s.conn.Query(ctx, `SELECT org, env, source, id, toInt64(toUInt32(ingested_at)) FROM usage_events WHERE ingested_at >= toDateTime(?, 'UTC')`, since)
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: load usage dedupe set: %w", s.addr, err)
	}
	var org, env, source, id string
	var at int64
	for rows.Next() {
		if err := rows.Scan(&org, &env, &source, &id, &at); err != nil {
			rows.Close()
			return nil, fmt.Errorf("clickhouse %s: load usage dedupe set: %w", s.addr, err)
		}
		u.seen[usageKey(org, env, source, id)] = int32(at / 3600)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse %s: load usage dedupe set: %w", s.addr, err)
	}
	usagecommit.Start(u.q, (*usageCommitter)(u), opts.MaxGroupRows)
	u.stopFolds = meter.RunFolds(u.opts.FoldInterval, u.FoldMeters, u.st.log)
	return u, nil
}

func usageKey(org, env, source, id string) xxh3.Uint128 {
	h := xxh3.New()
	for i, s := range [4]string{org, env, source, id} {
		if i > 0 {
			h.Write([]byte{0})
		}
		h.WriteString(s)
	}
	return h.Sum128()
}

// DB implements meter.Store.
func (u *Usage) DB() *sql.DB { return u.st.db }

// AppendUsage implements meter.Store.
func (u *Usage) AppendUsage(ctx context.Context, events []meter.Event) (meter.AppendResult, error) {
	return usagecommit.Submit(ctx, u.q, events, func(e *meter.Event) xxh3.Uint128 {
		return usageKey(e.Org, e.Env, e.Source, e.ID)
	})
}

// usageCommitter is the Usage as the group commit's committer.
type usageCommitter Usage

// Commit inserts the new events of g in one INSERT and answers each batch
// once ClickHouse has acknowledged it.
func (c *usageCommitter) Commit(g *usagecommit.Group) {
	u := (*Usage)(c)
	u.commitMu.Lock()
	exact := time.Now().UTC()
	u.committing = exact.UnixMilli()
	u.commitMu.Unlock()
	defer u.setCommitting(0)
	now := exact.Truncate(time.Second)
	hour := hourOf(now)
	if now.Sub(u.sweep) > time.Hour {
		u.sweep = now
		oldest := hourOf(now.Add(-u.opts.DedupeHorizon))
		for k, h := range u.seen {
			if h < oldest {
				delete(u.seen, k)
			}
		}
	}
	var res []meter.AppendResult
	var added []xxh3.Uint128
	err := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		b, err := u.st.conn.PrepareBatch(ctx, "INSERT INTO usage_events (org, env, type, subject, ts, ts_ms, source, id, ingested_at, ingested_ms, data, data_keys, data_str, data_num)")
		if err != nil {
			return err
		}
		defer b.Abort()
		res, err = usagecommit.Fill(g, func(k xxh3.Uint128) bool {
			_, dup := u.seen[k]
			return dup
		}, func(k xxh3.Uint128, e *meter.Event) error {
			u.seen[k] = hour
			added = append(added, k)
			keys, strs, nums := e.Keys, e.Str, e.Num
			if keys == nil {
				keys, strs, nums = []string{}, []string{}, []float64{}
			}
			return b.Append(e.Org, e.Env, e.Type, e.Subject, e.Time.Truncate(time.Second), e.Time.UnixMilli(),
				e.Source, e.ID, now, exact.UnixMilli(), string(e.Data), keys, strs, nums)
		})
		if err != nil || len(added) == 0 {
			return err
		}
		return b.Send()
	}()
	if err != nil {
		for _, k := range added {
			delete(u.seen, k)
		}
		u.st.log.Error("insert usage events", "err", err)
		g.Answer(nil, fmt.Errorf("insert usage events into clickhouse %s: %w", u.st.addr, err))
		return
	}
	g.Answer(res, nil)
}

// PutMeter implements meter.Store.
func (u *Usage) PutMeter(ctx context.Context, m meter.Meter) error {
	return u.putMeter(ctx, m, 0)
}

func (u *Usage) putMeter(ctx context.Context, m meter.Meter, deleted uint8) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	b, err := u.st.conn.PrepareBatch(ctx, "INSERT INTO meters (org, env, slug, id, body, deleted, version)")
	if err != nil {
		return fmt.Errorf("store meter %s: %w", m.Slug, err)
	}
	defer b.Abort()
	if err := b.Append(m.Org, m.Env, m.Slug, m.ID, string(body), deleted, uint64(time.Now().UnixNano())); err != nil {
		return err
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("store meter %s: %w", m.Slug, err)
	}
	return nil
}

// Meters implements meter.Store.
func (u *Usage) Meters(ctx context.Context, org, env string) ([]meter.Meter, error) {
	rows, err := u.st.conn.Query(ctx, `SELECT body FROM meters FINAL WHERE org = ? AND env = ? AND deleted = 0 ORDER BY slug`, org, env)
	if err != nil {
		return nil, fmt.Errorf("list meters: %w", err)
	}
	defer rows.Close()
	var out []meter.Meter
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return nil, err
		}
		var m meter.Meter
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			return nil, fmt.Errorf("stored meter: %w", err)
		}
		m.Org, m.Env = org, env
		out = append(out, m)
	}
	return out, rows.Err()
}

// DeleteMeter implements meter.Store.
func (u *Usage) DeleteMeter(ctx context.Context, org, env, slug string) error {
	ms, err := u.Meters(ctx, org, env)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.Slug == slug {
			return u.putMeter(ctx, m, 1)
		}
	}
	return meter.ErrNotFound
}

// Close stops the writer after it has written every queued batch; the
// Store stays open.
func (u *Usage) Close() error {
	u.closeOnce.Do(func() {
		u.stopFolds()
		u.q.Close()
	})
	return nil
}
