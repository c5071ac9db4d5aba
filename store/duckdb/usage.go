package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"
	"github.com/zeebo/xxh3"

	"github.com/apimeter/apimeter/meter"
	"github.com/apimeter/apimeter/store/internal/usagecommit"
)

// usageSchema holds the usage events (meter.Event) and the meter
// definitions. A usage event's data is kept as sent and flattened into
// three parallel lists (key, text, number), which the meter queries read
// with list_position: the same representation the ClickHouse store has,
// so that both answer alike.
const usageSchema = `
CREATE TABLE IF NOT EXISTS usage_events (
  org VARCHAR NOT NULL,
  env VARCHAR NOT NULL,
  type VARCHAR NOT NULL,
  subject VARCHAR NOT NULL,
  ts_ms BIGINT NOT NULL,        -- event time, epoch milliseconds
  source VARCHAR NOT NULL,
  id VARCHAR NOT NULL,          -- unique per (org, env, source) within the horizon
  ingested_ms BIGINT NOT NULL,  -- commit time, epoch milliseconds
  data VARCHAR NOT NULL,        -- the data object as sent, compacted
  data_keys VARCHAR[] NOT NULL, -- flattened paths: a.b for $.a.b
  data_str VARCHAR[] NOT NULL,  -- each path's value as text
  data_num DOUBLE[] NOT NULL    -- each path's value as a number, NaN if none
);
CREATE TABLE IF NOT EXISTS meters (
  org VARCHAR NOT NULL,
  env VARCHAR NOT NULL,
  slug VARCHAR NOT NULL,
  id VARCHAR NOT NULL,
  body VARCHAR NOT NULL,        -- the meter as OpenMeter's JSON
  PRIMARY KEY (org, env, slug)
);
`

// DefaultUsageDedupeMemory bounds the usage events' dedupe set unless
// configured otherwise; ids it cannot hold are looked up in the table.
const DefaultUsageDedupeMemory = 64_000_000

// UsageOptions configure a Usage. The zero value is usable.
type UsageOptions struct {
	// DedupeHorizon is how long (source, id) is remembered; zero means
	// the store's.
	DedupeHorizon time.Duration
	// DedupeMemory bounds the dedupe set in bytes; zero means
	// DefaultUsageDedupeMemory.
	DedupeMemory int64
	// MaxGroupRows bounds the rows of one commit; zero means 65536.
	MaxGroupRows int
	// FoldInterval is how often the meters' aggregates are brought up to
	// date (FoldMeters); zero means DefaultFoldInterval, a negative value
	// none (tests call FoldMeters).
	FoldInterval time.Duration
}

// Usage is the DuckDB store's meter.Store: usage events written by the
// group commit's writer goroutine (groupcommit) through an appender,
// concurrent batches grouped into one commit, deduplicated by (org, env,
// source, id) within the horizon. Close it before the Store.
type Usage struct {
	st   *Store
	opts UsageOptions
	conn *sql.Conn
	app  *duckdb.Appender

	q *usagecommit.Queue

	seen  *seenSet
	seed  uint64
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
	if opts.DedupeMemory == 0 {
		opts.DedupeMemory = DefaultUsageDedupeMemory
	}
	if _, err := s.db.ExecContext(ctx, usageSchema+meterAggSchema); err != nil {
		return nil, fmt.Errorf("create usage tables: %w", err)
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("usage writer: %w", err)
	}
	u := &Usage{
		st: s, opts: opts, conn: conn,
		q:    usagecommit.NewQueue(1024),
		seen: newSeenSet(opts.DedupeMemory),
		seed: rand.Uint64(),
	}
	if err := u.newAppender(); err != nil {
		conn.Close()
		return nil, err
	}
	if err := u.loadSeen(ctx); err != nil {
		u.app.Close()
		conn.Close()
		return nil, err
	}
	usagecommit.Start(u.q, (*usageCommitter)(u), opts.MaxGroupRows)
	u.stopFolds = meter.RunFolds(u.opts.FoldInterval, u.FoldMeters, u.st.log)
	return u, nil
}

// newAppender starts an appender on the writer's connection (again after
// a failed flush, which leaves an appender unusable).
func (u *Usage) newAppender() error {
	if u.app != nil {
		u.conn.Raw(func(any) error { u.app.Clear(); return u.app.Close() })
		u.app = nil
	}
	return u.conn.Raw(func(dc any) error {
		app, err := duckdb.NewAppenderFromConn(dc.(driver.Conn), "", "usage_events")
		if err != nil {
			return fmt.Errorf("usage appender: %w", err)
		}
		u.app = app
		return nil
	})
}

// DB implements meter.Store.
func (u *Usage) DB() *sql.DB { return u.st.db }

func (u *Usage) key(buf []byte, org, env, source, id string) (xxh3.Uint128, []byte) {
	buf = append(append(append(append(append(append(append(buf[:0], org...), 0), env...), 0), source...), 0), id...)
	return xxh3.Hash128Seed(buf, u.seed), buf
}

// loadSeen rebuilds the dedupe set from the usage events ingested within
// the horizon, the newest minutes first, as many as the set holds; older
// ones are looked up in the table (onDisk).
func (u *Usage) loadSeen(ctx context.Context) error {
	u.sweep = time.Now()
	var buf []byte
	err := u.seen.load(ctx, u.st.db, time.Now().Add(-u.opts.DedupeHorizon), seenSource{
		counts: `SELECT ingested_ms // 60000 AS m, count(*) FROM usage_events
WHERE ingested_ms >= ? GROUP BY m ORDER BY m DESC`,
		keys: `SELECT org, env, source, id, ingested_ms // 60000 FROM usage_events WHERE ingested_ms >= ?`,
		arg:  func(t time.Time) any { return t.UnixMilli() },
		scan: func(rows *sql.Rows) (k xxh3.Uint128, m int32, err error) {
			var org, env, source, id string
			if err = rows.Scan(&org, &env, &source, &id, &m); err == nil {
				k, buf = u.key(buf, org, env, source, id)
			}
			return k, m, err
		},
	})
	if err != nil {
		return fmt.Errorf("load usage dedupe set: %w", err)
	}
	return nil
}

// AppendUsage implements meter.Store: it returns once the events are
// committed (DuckDB syncs its write-ahead log on commit).
func (u *Usage) AppendUsage(ctx context.Context, events []meter.Event) (meter.AppendResult, error) {
	var buf []byte
	return usagecommit.Submit(ctx, u.q, events, func(e *meter.Event) (k xxh3.Uint128) {
		k, buf = u.key(buf, e.Org, e.Env, e.Source, e.ID)
		return k
	})
}

// noNums is the numbers of an event whose data has no paths.
var noNums = []float64{}

// usageCommitter is the Usage as the group commit's committer.
type usageCommitter Usage

// Commit appends the new events of g and commits them in one transaction,
// then answers each batch.
func (c *usageCommitter) Commit(g *usagecommit.Group) {
	u := (*Usage)(c)
	u.commitMu.Lock()
	now := time.Now()
	u.committing = now.UnixMilli()
	u.commitMu.Unlock()
	defer u.setCommitting(0)
	if now.Sub(u.sweep) > time.Hour {
		u.sweep = now
		u.seen.Forget(minuteOf(now.Add(-u.opts.DedupeHorizon)))
	}
	u.seen.Reserve(g.Rows)
	old, err := u.onDisk(g, now)
	if err != nil {
		g.Answer(nil, fmt.Errorf("dedupe check: %w", err))
		return
	}
	minute := minuteOf(now)
	var res []meter.AppendResult
	var added []xxh3.Uint128
	ingested := now.UnixMilli()
	err = u.conn.Raw(func(any) error {
		var err error
		res, err = usagecommit.Fill(g, func(k xxh3.Uint128) bool {
			_, dup := old[k]
			return dup || u.seen.Has(k)
		}, func(k xxh3.Uint128, e *meter.Event) error {
			u.seen.Add(k, minute)
			added = append(added, k)
			keys, strs, nums := e.Keys, e.Str, e.Num
			if keys == nil {
				keys, strs, nums = []string{}, []string{}, noNums
			}
			if err := u.app.AppendRow(e.Org, e.Env, e.Type, e.Subject, e.Time.UnixMilli(), e.Source, e.ID,
				ingested, string(e.Data), keys, strs, nums); err != nil {
				return fmt.Errorf("append usage event: %w", err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return u.app.Flush()
	})
	if err != nil {
		// Nothing of the group is stored: its ids are forgotten so that
		// the retry is.
		for _, k := range added {
			u.seen.Remove(k)
		}
		if rerr := u.newAppender(); rerr != nil {
			err = errors.Join(err, rerr)
		}
		g.Answer(nil, fmt.Errorf("commit usage events: %w", err))
		return
	}
	g.Answer(res, nil)
}

// onDisk returns, of the events of group the dedupe set does not hold,
// the keys of those the table holds within the horizon, once the set has
// had to forget some of the horizon's ids to keep to its bound.
func (u *Usage) onDisk(g *usagecommit.Group, now time.Time) (map[xxh3.Uint128]struct{}, error) {
	if u.seen.below <= minuteOf(now.Add(-u.opts.DedupeHorizon)) {
		return nil, nil
	}
	type scope struct{ org, env string }
	ids := map[scope][]string{}
	for _, r := range g.Reqs {
		for i, k := range r.Batch.Keys {
			if !u.seen.Has(k) {
				e := &r.Batch.Events[i]
				sc := scope{e.Org, e.Env}
				ids[sc] = append(ids[sc], e.ID)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lo, hi := now.Add(-u.opts.DedupeHorizon).UnixMilli(), int64(u.seen.below)*60000
	old := map[xxh3.Uint128]struct{}{}
	var buf []byte
	for sc, list := range ids {
		rows, err := u.st.db.QueryContext(ctx, `SELECT source, id FROM usage_events WHERE org = ? AND env = ?
AND ingested_ms >= ? AND ingested_ms < ? AND id IN (SELECT unnest(?::VARCHAR[]))`, sc.org, sc.env, lo, hi, list)
		if err != nil {
			return nil, fmt.Errorf("look up %d usage ids: %w", len(list), err)
		}
		for rows.Next() {
			var source, id string
			if err := rows.Scan(&source, &id); err != nil {
				rows.Close()
				return nil, err
			}
			var k xxh3.Uint128
			k, buf = u.key(buf, sc.org, sc.env, source, id)
			old[k] = struct{}{}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, err
		}
	}
	return old, nil
}

// PutMeter implements meter.Store.
func (u *Usage) PutMeter(ctx context.Context, m meter.Meter) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if _, err := u.st.db.ExecContext(ctx, `INSERT OR REPLACE INTO meters (org, env, slug, id, body) VALUES (?, ?, ?, ?, ?)`,
		m.Org, m.Env, m.Slug, m.ID, string(body)); err != nil {
		return fmt.Errorf("store meter %s: %w", m.Slug, err)
	}
	return nil
}

// Meters implements meter.Store.
func (u *Usage) Meters(ctx context.Context, org, env string) ([]meter.Meter, error) {
	rows, err := u.st.db.QueryContext(ctx, `SELECT body FROM meters WHERE org = ? AND env = ? ORDER BY slug`, org, env)
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
		m, err := decodeMeter(body, org, env)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

func decodeMeter(body, org, env string) (meter.Meter, error) {
	var m meter.Meter
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		return m, fmt.Errorf("stored meter: %w", err)
	}
	m.Org, m.Env = org, env
	return m, nil
}

// DeleteMeter implements meter.Store.
func (u *Usage) DeleteMeter(ctx context.Context, org, env, slug string) error {
	res, err := u.st.db.ExecContext(ctx, `DELETE FROM meters WHERE org = ? AND env = ? AND slug = ?`, org, env, slug)
	if err != nil {
		return fmt.Errorf("delete meter %s: %w", slug, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return meter.ErrNotFound
	}
	return nil
}

// Close stops the writer after it has written every queued batch and
// releases its connection; the Store stays open.
func (u *Usage) Close() error {
	var err error
	u.closeOnce.Do(func() {
		u.stopFolds()
		u.q.Close()
		err = u.conn.Raw(func(any) error { return u.app.Close() })
		err = errors.Join(err, u.conn.Close())
	})
	return err
}
