// Package clickhouse is apimeter's store for deployments past one machine:
// events in a ClickHouse MergeTree table, written over the native protocol
// (LZ4) by one writer goroutine per process that groups concurrent batches
// into one INSERT (group commit), so that an answered Append is in
// ClickHouse. Event ids are deduplicated twice: by a set of the ids of the
// dedupe horizon in front of the table (what Append reports, and what the
// usage counters count), and by the table itself, a ReplacingMergeTree keyed
// on the event id and read with FINAL, so that a redelivery that reaches
// another process (a second collector, a consumer after a rebalance) is
// still counted once. docs/scale.md says why both.
package clickhouse

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/zeebo/xxh3"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/store/detail"
	"github.com/apimeter/apimeter/store/internal/groupcommit"
)

// DefaultDedupeHorizon is how long an event id is remembered in front of the
// table unless configured otherwise.
const DefaultDedupeHorizon = 7 * 24 * time.Hour

// Options configure a Store. The zero value is usable.
type Options struct {
	// DedupeHorizon is how long after ingest an (org, env, id) is still
	// recognised as a duplicate before it reaches ClickHouse. Zero means
	// DefaultDedupeHorizon.
	DedupeHorizon time.Duration
	// MaxGroupRows bounds how many rows one INSERT takes. Zero means 65536.
	MaxGroupRows int
	// Retention is how long events are kept: a month's partition is dropped
	// once its last day is older than Retention. Zero keeps everything.
	Retention time.Duration
	// RetentionInterval is how often partitions are looked at. Zero means
	// an hour.
	RetentionInterval time.Duration
	// NoDedupe turns the set in front of the table off: for benchmarks,
	// and for commands that do not append (apps, keys), which then need
	// not load the ids of the horizon. The table still collapses
	// duplicates when read with FINAL.
	NoDedupe bool
	// DialTimeout bounds connecting; zero means 5 s.
	DialTimeout time.Duration
	Logger      *slog.Logger
}

// Store is a ClickHouse-backed apimeter.Store.
type Store struct {
	conn driver.Conn // native protocol: inserts and DDL
	db   *sql.DB     // database/sql over the native protocol: reads
	addr string
	opts Options
	log  *slog.Logger

	q *groupcommit.Queue[*batch, apimeter.AppendResult] // the group commit's queue

	// seen maps the hash of (org, env, id) to the hour (unix/3600) the
	// event was ingested; only the writer goroutine touches it.
	seen      map[xxh3.Uint128]int32
	lastSweep time.Time
	// doubt holds the events of INSERTs that failed without saying
	// whether ClickHouse took them (the connection cut, the server killed
	// after it wrote the part): the sender retries, and a retry of one is
	// looked up in the table before it is inserted, so that it is not
	// inserted twice (the events table's FINAL would hide the copy, the
	// rollups' views would count it). Only the writer goroutine touches it.
	doubt map[xxh3.Uint128]doubtful
	// insert sends one INSERT: SendColumns, but for tests that lose its
	// answer.
	insert func(ctx context.Context, conn driver.Conn, c *Columns) error
	// grp is the group being filled; only the writer touches it.
	grp group

	bgDone    chan struct{}
	bgCancel  context.CancelFunc
	closeOnce sync.Once
}

// batch is one Append call's events on their way to the writer.
type batch struct {
	events []apimeter.Event
	keys   []xxh3.Uint128
	// docs are the detail documents, built by the caller so that the
	// writer only copies and sends.
	docs []string
}

// appendReq is a batch in the group commit's queue.
type appendReq = groupcommit.Request[*batch, apimeter.AppendResult]

// Columns of the events table, in insert order. Everything that is grouped
// or filtered on has a column of its own; the rest is in detail.
const eventColumns = `id, org, env, ingested_at, ts, ts_us, api_name, method, uri, path, route,
status, latency_ms, target_latency_ms, req_size, resp_size,
user_id, company_id, api_key_id, client_ip, user_agent, target_url, weight, api_version, detail`

// migrations are applied in order, once each; schema_version records the
// last applied. Only append to this list.
// migrations are the base schema, then the rollup tables (rollup.go):
// a migration added later goes after both (a slice of its own appended
// here), never into baseMigrations, or the numbers of the rollup
// migrations that databases have recorded would shift.
var migrations = slices.Concat(baseMigrations, rollupMigrations())

var baseMigrations = []string{
	// Events: one partition per month of request time (retention drops
	// whole partitions; 18.16 has no TTL), sorted for the Metrics API's
	// common filters. ts is the request time to the second (what
	// partitions, indexes and buckets use), ts_us the same instant in
	// microseconds (what the event stream shows and sub-second bounds use).
	// The sorting key ends with id: ReplacingMergeTree collapses rows with
	// equal keys, so a redelivered event (same org, env, api, time and id)
	// is one row after merges and in every FINAL read before them.
	`CREATE TABLE IF NOT EXISTS events (
  id String,
  org String,
  env String,
  ingested_at DateTime('UTC'),
  ts DateTime('UTC'),
  ts_us Int64,
  api_name String,
  method String,
  uri String,
  path String,
  route String,
  status Int32,
  latency_ms Float64,
  target_latency_ms Nullable(Float64),
  req_size Nullable(Int64),
  resp_size Nullable(Int64),
  user_id String,
  company_id String,
  api_key_id String,
  client_ip String,
  user_agent String,
  target_url String,
  weight Int64,
  api_version String,
  detail String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (org, env, api_name, ts, id)`,
	// Profiles: the newest write of a key wins (version), read with FINAL.
	`CREATE TABLE IF NOT EXISTS profiles (
  org String,
  env String,
  kind String,
  id String,
  company_id String,
  modified_us Int64,
  body String,
  version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (org, env, kind, id)`,
	// Application ids (write keys), shared by every collector.
	`CREATE TABLE IF NOT EXISTS apps (
  id String,
  org String,
  env String,
  created DateTime('UTC')
) ENGINE = ReplacingMergeTree
ORDER BY id`,
	// Read and admin keys (hashes only), shared by every collector; the
	// version is the state, so that a revocation wins (keys.go).
	`CREATE TABLE IF NOT EXISTS auth_keys (
  id String,
  org String,
  envs Array(String),
  scope String,
  name String,
  sha256 String,
  created DateTime('UTC'),
  revoked Nullable(DateTime('UTC')),
  state UInt8
) ENGINE = ReplacingMergeTree(state)
ORDER BY id`,
	// Values every process on the database must agree on (Setting); the
	// first written of a name wins.
	`CREATE TABLE IF NOT EXISTS settings (
  name String,
  value String,
  written DateTime('UTC')
) ENGINE = MergeTree
ORDER BY (name, written)`,
	// Customer portal tokens (hashes only), as auth_keys (portal.go),
	// by month of expiry, so that old months can be dropped whole.
	`CREATE TABLE IF NOT EXISTS portal_tokens (
  id String,
  org String,
  env String,
  customer_kind String,
  customer_id String,
  name String,
  pages Array(String),
  meters Array(String),
  sha256 String,
  created DateTime('UTC'),
  expires DateTime('UTC'),
  revoked Nullable(DateTime('UTC')),
  state UInt8
) ENGINE = ReplacingMergeTree(state)
PARTITION BY toYYYYMM(expires)
ORDER BY id`,
}

// ErrUnreachable is wrapped by Open's error when no ClickHouse server
// answers at the address.
var ErrUnreachable = errors.New("clickhouse server unreachable")

// ErrUnsupported is wrapped by Open's error when the server lacks what
// apimeter needs.
var ErrUnsupported = errors.New("clickhouse server lacks what apimeter needs")

// ParseDSN reads a store address, clickhouse://host:9000/db (native
// protocol; user and password may be given as user:password@). The
// address must name its database: writing to "default" by mistake would
// mix apimeter's tables with whatever else is there. Its errors show the
// address without its password.
func ParseDSN(dsn string) (*ch.Options, error) {
	if !strings.HasPrefix(dsn, "clickhouse://") {
		return nil, fmt.Errorf("store address %s: want clickhouse://host:9000/db", Redact(dsn))
	}
	o, err := ch.ParseDSN(dsn)
	if err != nil {
		// The driver's errors may quote the address; say what is wrong
		// without it.
		return nil, fmt.Errorf("store address %s: not a valid URL", Redact(dsn))
	}
	if len(o.Addr) == 0 || o.Addr[0] == "" {
		return nil, fmt.Errorf("store address %s: no host", Redact(dsn))
	}
	if o.Auth.Database == "" {
		return nil, fmt.Errorf("store address %s: no database; name it in the path, e.g. clickhouse://host:9000/apimeter", Redact(dsn))
	}
	if _, _, err := net.SplitHostPort(o.Addr[0]); err != nil {
		o.Addr[0] = net.JoinHostPort(o.Addr[0], "9000")
	}
	return o, nil
}

// Redact returns dsn with its password, if any, replaced by "xxxxx", for
// messages and logs.
func Redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		// Unparsable: keep the scheme and what follows the last '@'
		// before the path, where a password would be.
		rest, scheme := dsn, ""
		if i := strings.Index(dsn, "://"); i >= 0 {
			scheme, rest = dsn[:i+3], dsn[i+3:]
		}
		host := rest
		if i := strings.IndexAny(rest, "/?"); i >= 0 {
			host = rest[:i]
		}
		if i := strings.LastIndex(host, "@"); i >= 0 {
			return scheme + "xxxxx@" + rest[i+1:]
		}
		return dsn
	}
	_, hasPassword := u.User.Password()
	q := u.Query()
	if !hasPassword && !q.Has("password") {
		return dsn // as given: url.URL would rewrite some forms
	}
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// Open connects to the ClickHouse server at dsn (clickhouse://host:9000/db),
// creates the database and applies the schema migrations, checks that the
// server has the functions apimeter uses, loads the dedupe set and starts
// the writer.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if opts.DedupeHorizon == 0 {
		opts.DedupeHorizon = DefaultDedupeHorizon
	}
	if opts.MaxGroupRows == 0 {
		opts.MaxGroupRows = 65536
	}
	if opts.RetentionInterval == 0 {
		opts.RetentionInterval = time.Hour
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	o, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	o.Compression = &ch.Compression{Method: ch.CompressionLZ4}
	o.DialTimeout = opts.DialTimeout
	o.MaxOpenConns = 16
	addr, database := o.Addr[0], o.Auth.Database
	if err := createDatabase(ctx, *o, database); err != nil {
		return nil, err
	}
	conn, err := ch.Open(o)
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", addr, err)
	}
	db := ch.OpenDB(o)
	s := &Store{
		conn: conn, db: db, addr: addr, opts: opts, log: opts.Logger,
		q:      groupcommit.NewQueue[*batch, apimeter.AppendResult](1024),
		seen:   map[xxh3.Uint128]int32{},
		doubt:  map[xxh3.Uint128]doubtful{},
		insert: SendColumns,
		bgDone: make(chan struct{}),
	}
	fail := func(err error) (*Store, error) {
		conn.Close()
		db.Close()
		return nil, err
	}
	if err := s.check(ctx); err != nil {
		return fail(err)
	}
	if err := s.migrate(ctx); err != nil {
		return fail(err)
	}
	if err := s.loadSeen(ctx); err != nil {
		return fail(err)
	}
	go s.writer()
	bg, cancel := context.WithCancel(context.Background())
	s.bgCancel = cancel
	go s.retentionLoop(bg)
	return s, nil
}

// createDatabase connects to the server's default database to create the
// store's, since a connection to a missing database fails.
func createDatabase(ctx context.Context, o ch.Options, database string) error {
	addr := o.Addr[0]
	o.Auth.Database = "default"
	o.MaxOpenConns = 1
	conn, err := ch.Open(&o)
	if err != nil {
		return fmt.Errorf("clickhouse %s: %w", addr, err)
	}
	defer conn.Close()
	// Bounded, so that a port that accepts and never answers (not a
	// ClickHouse server) fails at start instead of after the driver's
	// read timeout of minutes.
	pctx, cancel := context.WithTimeout(ctx, 2*o.DialTimeout+time.Second)
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrUnreachable, addr, err)
	}
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+quoteIdent(database)); err != nil {
		return fmt.Errorf("clickhouse %s: create database %s: %w", addr, database, err)
	}
	return nil
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "\\`") + "`" }

// requirements are the functions and engines apimeter's SQL relies on, each
// tried once at start so that a server that lacks one is refused with its
// name rather than failing later on a Metrics API call.
var requirements = []struct{ what, sql string }{
	{"quantileExactWeighted (weighted percentiles)", "SELECT quantileExactWeighted(0.95)(toFloat64(number), toUInt64(1)) FROM numbers(3)"},
	{"uniqExactIf (distinct users)", "SELECT uniqExactIf(toString(number), number > 0) FROM numbers(3)"},
	{"extract (base path)", "SELECT extract('/a/b', '^/[^/]*')"},
	{"toStartOfMonth, toYYYYMM (buckets, partitions)", "SELECT toStartOfMonth(toDateTime(0, 'UTC')), toYYYYMM(toDateTime(0, 'UTC'))"},
	{"LIKE with backslash escapes", "SELECT 'a%' LIKE 'a\\\\%'"},
}

func (s *Store) check(ctx context.Context) error {
	var version string
	if err := s.conn.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrUnreachable, s.addr, err)
	}
	if !versionAtLeast(version, 18, 16) {
		return fmt.Errorf("%w: %s runs ClickHouse %s; apimeter needs 18.16 or later", ErrUnsupported, s.addr, version)
	}
	for _, r := range requirements {
		if err := s.conn.Exec(ctx, r.sql); err != nil {
			return fmt.Errorf("%w: %s (ClickHouse %s) has no %s: %v", ErrUnsupported, s.addr, version, r.what, err)
		}
	}
	return nil
}

func versionAtLeast(v string, major, minor int) bool {
	var a, b int
	if _, err := fmt.Sscanf(v, "%d.%d", &a, &b); err != nil {
		return false
	}
	return a > major || a == major && b >= minor
}

// migrate applies the migrations not applied yet. Several processes may
// start at once: every statement is idempotent, and the version table only
// ever grows.
func (s *Store) migrate(ctx context.Context) error {
	if err := s.conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version UInt32, applied_at DateTime('UTC')) ENGINE = MergeTree ORDER BY version`); err != nil {
		return fmt.Errorf("clickhouse %s: schema_version: %w", s.addr, err)
	}
	var applied uint32
	if err := s.conn.QueryRow(ctx, "SELECT toUInt32(max(version)) FROM schema_version").Scan(&applied); err != nil {
		return fmt.Errorf("clickhouse %s: read schema version: %w", s.addr, err)
	}
	for i := int(applied); i < len(migrations); i++ {
		if err := s.conn.Exec(ctx, migrations[i]); err != nil {
			return fmt.Errorf("clickhouse %s: migration %d: %w", s.addr, i+1, err)
		}
		b, err := s.conn.PrepareBatch(ctx, "INSERT INTO schema_version (version, applied_at)")
		if err != nil {
			return fmt.Errorf("clickhouse %s: record migration %d: %w", s.addr, i+1, err)
		}
		if err := b.Append(uint32(i+1), time.Now().UTC()); err != nil {
			return err
		}
		if err := b.Send(); err != nil {
			return fmt.Errorf("clickhouse %s: record migration %d: %w", s.addr, i+1, err)
		}
	}
	return nil
}

// Ready reports whether the store can take writes: it is open and the
// server answers (/readyz).
func (s *Store) Ready(ctx context.Context) error {
	select {
	case <-s.q.Stopped():
		return groupcommit.ErrClosed
	default:
	}
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrUnreachable, s.addr, err)
	}
	return nil
}

// Addr is the server's address, host:port.
func (s *Store) Addr() string { return s.addr }

// SchemaVersion is the number of migrations the code knows.
func SchemaVersion() int { return len(migrations) }

// DB returns the database for read queries (Metrics API, usage).
func (s *Store) DB() *sql.DB { return s.db }

// Conn returns the native connection (benchmarks, tools).
func (s *Store) Conn() driver.Conn { return s.conn }

func dedupeKey(org, env, id string) xxh3.Uint128 {
	h := xxh3.New()
	h.WriteString(org)
	h.Write([]byte{0})
	h.WriteString(env)
	h.Write([]byte{0})
	h.WriteString(id)
	return h.Sum128()
}

func hourOf(t time.Time) int32 { return int32(t.Unix() / 3600) }

// loadSeen rebuilds the dedupe set from the events ingested within the
// horizon, so that idempotency holds across restarts.
func (s *Store) loadSeen(ctx context.Context) error {
	if s.opts.NoDedupe {
		return nil
	}
	since := time.Now().Add(-s.opts.DedupeHorizon).Unix()
	rows, err := s.conn.Query(ctx, `SELECT org, env, id, toInt64(toUInt32(ingested_at)) FROM events WHERE ingested_at >= toDateTime(?, 'UTC')`, since)
	if err != nil {
		return fmt.Errorf("clickhouse %s: load dedupe set: %w", s.addr, err)
	}
	defer rows.Close()
	var org, env, id string
	var at int64
	for rows.Next() {
		if err := rows.Scan(&org, &env, &id, &at); err != nil {
			return fmt.Errorf("clickhouse %s: load dedupe set: %w", s.addr, err)
		}
		s.seen[dedupeKey(org, env, id)] = int32(at / 3600)
	}
	s.lastSweep = time.Now()
	return rows.Err()
}

// Append implements apimeter.Store. It returns after ClickHouse has
// acknowledged the INSERT holding the events, sharing it with every batch
// that arrived meanwhile.
func (s *Store) Append(ctx context.Context, events []apimeter.Event) (apimeter.AppendResult, error) {
	if len(events) == 0 {
		return apimeter.AppendResult{}, nil
	}
	req := &batch{events: events, docs: make([]string, len(events))}
	var buf []byte
	for i := range events {
		buf = detail.Append(buf[:0], &events[i])
		req.docs[i] = string(buf)
	}
	if !s.opts.NoDedupe {
		req.keys = make([]xxh3.Uint128, len(events))
		for i := range events {
			req.keys[i] = dedupeKey(events[i].Org, events[i].Env, events[i].ID)
		}
	}
	return s.q.Submit(ctx, req)
}

// writer takes the queued batches, as many as arrived while the previous
// INSERT ran (up to MaxGroupRows), and sends them as one INSERT.
func (s *Store) writer() {
	defer s.q.Finished()
	groupcommit.Run(s.q, (*inserter)(s), nil)
}

// inserter is the Store as groupcommit.Run's Writer: one group, reused,
// written by the writer goroutine itself.
type inserter Store

func (w *inserter) Begin() *group {
	w.grp.reset()
	w.grp.max = w.opts.MaxGroupRows
	return &w.grp
}

func (w *inserter) Add(g *group, r *appendReq) { (*Store)(w).add(g, r) }
func (w *inserter) Commit(g *group)            { (*Store)(w).commit(g) }
func (w *inserter) Idle()                      { (*Store)(w).sweep(time.Now()) }

// group is one INSERT under way: its callers, their results and the rows.
type group struct {
	reqs    []*appendReq
	results []apimeter.AppendResult
	errs    []error // a caller's batch that could not be checked against the table
	keys    []xxh3.Uint128
	cols    Columns
	max     int // rows past which the group takes no more batches
}

// Full says the group takes no more batches (groupcommit.Group).
func (g *group) Full() bool { return g.cols.n >= g.max }

func (g *group) reset() {
	g.reqs, g.results, g.errs, g.keys = g.reqs[:0], g.results[:0], g.errs[:0], g.keys[:0]
	g.cols.Reset()
}

func (s *Store) add(g *group, req *appendReq) {
	g.reqs = append(g.reqs, req)
	g.results = append(g.results, apimeter.AppendResult{})
	g.errs = append(g.errs, nil)
	res := &g.results[len(g.results)-1]
	now := time.Now().UTC().Truncate(time.Second)
	hour := hourOf(now)
	if len(s.doubt) > 0 && !s.opts.NoDedupe {
		if err := s.settleDoubts(req.Batch); err != nil {
			// Neither stored nor a duplicate for sure: the sender retries.
			g.errs[len(g.errs)-1] = err
			return
		}
	}
	for i := range req.Batch.events {
		if !s.opts.NoDedupe {
			k := req.Batch.keys[i]
			if _, dup := s.seen[k]; dup {
				res.Duplicates++
				continue
			}
			// Marked now so that a repeat later in the group is a
			// duplicate; forgotten again if the INSERT fails.
			s.seen[k] = hour
			g.keys = append(g.keys, k)
		}
		g.cols.add(&req.Batch.events[i], req.Batch.docs[i], now)
		res.Stored = append(res.Stored, &req.Batch.events[i])
	}
}

func (s *Store) commit(g *group) {
	began := time.Now()
	err := s.send(g.cols)
	if err != nil {
		s.log.Error("insert events", "rows", g.cols.n, "err", err)
		for _, k := range g.keys {
			delete(s.seen, k)
		}
		s.addDoubts(g)
		for _, req := range g.reqs {
			req.Answer(apimeter.AppendResult{}, fmt.Errorf("insert events into clickhouse %s: %w", s.addr, err))
		}
		return
	}
	s.log.Debug("insert", "batches", len(g.reqs), "rows", g.cols.n, "took", time.Since(began))
	for i, req := range g.reqs {
		if g.errs[i] != nil {
			req.Answer(apimeter.AppendResult{}, g.errs[i])
			continue
		}
		req.Answer(g.results[i], nil)
	}
}

// doubtful is an event whose INSERT failed: it may be in the table.
type doubtful struct {
	org, env, id string
	hour         int32 // when its INSERT was tried
}

// maxDoubts bounds the doubt set; past it, the events of a failed INSERT
// are not remembered (a retry of one may then be inserted twice).
const maxDoubts = 1 << 20

// addDoubts puts the events of failed group g in the doubt set.
func (s *Store) addDoubts(g *group) {
	if s.opts.NoDedupe {
		return
	}
	hour := hourOf(time.Now())
	for _, res := range g.results {
		for _, e := range res.Stored {
			if len(s.doubt) >= maxDoubts {
				s.log.Warn("too many events of failed inserts to remember; a retry of the others may be stored twice", "remembered", len(s.doubt))
				return
			}
			s.doubt[dedupeKey(e.Org, e.Env, e.ID)] = doubtful{e.Org, e.Env, e.ID, hour}
		}
	}
}

// settleDoubts looks up the events of b that are in doubt in the table:
// those found are marked seen (a retry is then a duplicate), and every one
// looked up leaves the doubt set. It fails when the table cannot be read.
func (s *Store) settleDoubts(b *batch) error {
	type q struct{ org, env string }
	byScope := map[q][]string{}
	keys := map[string]xxh3.Uint128{}
	for _, k := range b.keys {
		d, ok := s.doubt[k]
		if !ok {
			continue
		}
		sc := q{d.org, d.env}
		byScope[sc] = append(byScope[sc], d.id)
		keys[d.org+"\x00"+d.env+"\x00"+d.id] = k
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for sc, ids := range byScope {
		rows, err := s.conn.Query(ctx, `SELECT DISTINCT id FROM events WHERE org = ? AND env = ? AND has(?, id)`, sc.org, sc.env, ids)
		if err != nil {
			return fmt.Errorf("clickhouse %s: look up events of a failed insert: %w", s.addr, err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return fmt.Errorf("clickhouse %s: look up events of a failed insert: %w", s.addr, err)
			}
			if k, ok := keys[sc.org+"\x00"+sc.env+"\x00"+id]; ok {
				s.seen[k] = s.doubt[k].hour
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("clickhouse %s: look up events of a failed insert: %w", s.addr, err)
		}
		for _, id := range ids {
			delete(s.doubt, keys[sc.org+"\x00"+sc.env+"\x00"+id])
		}
	}
	return nil
}

// send inserts the rows of c in one INSERT; without rows it does nothing.
func (s *Store) send(c Columns) error {
	if c.n == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return s.insert(ctx, s.conn, &c)
}

// sweep forgets ids older than the horizon, once an hour.
func (s *Store) sweep(now time.Time) {
	if s.opts.NoDedupe || now.Sub(s.lastSweep) < time.Hour {
		return
	}
	s.lastSweep = now
	oldest := hourOf(now.Add(-s.opts.DedupeHorizon))
	for k, h := range s.seen {
		if h < oldest {
			delete(s.seen, k)
		}
	}
	for k, d := range s.doubt {
		if d.hour < oldest {
			delete(s.doubt, k)
		}
	}
}

// Events implements apimeter.Store.
func (s *Store) Events(ctx context.Context, f apimeter.EventFilter) ([]apimeter.Event, error) {
	where, args := detail.Filter(f)
	add := func(cond string, v any) {
		where = append(where, cond)
		args = append(args, v)
	}
	// ts (seconds) narrows the parts read; ts_us is the exact bound.
	if !f.From.IsZero() {
		add("ts >= toDateTime(?, 'UTC')", f.From.Unix())
		add("ts_us >= ?", f.From.UnixMicro())
	}
	if !f.To.IsZero() {
		add("ts <= toDateTime(?, 'UTC')", f.To.Unix())
		add("ts_us < ?", f.To.UnixMicro())
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q := `SELECT ` + eventColumns + ` FROM events FINAL WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY ts_us DESC, id DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query events: %w", err)
	}
	defer rows.Close()
	var out []apimeter.Event
	for rows.Next() {
		var e apimeter.Event
		var ingested, ts time.Time
		var tsUS int64
		var doc, apiVersion string
		var reqSize, respSize *int64
		var target *float64
		var status int32
		err := rows.Scan(&e.ID, &e.Org, &e.Env, &ingested, &ts, &tsUS, &e.APIName, &e.Method, &e.URI, &e.Path, &e.Route,
			&status, &e.LatencyMs, &target, &reqSize, &respSize,
			&e.UserID, &e.CompanyID, &e.APIKeyID, &e.ClientIP, &e.UserAgent, &e.TargetURL, &e.Weight, &apiVersion, &doc)
		if err != nil {
			return nil, fmt.Errorf("scan event: %w", err)
		}
		e.Status = int(status)
		e.RequestTime = time.UnixMicro(tsUS).UTC()
		e.ResponseTime = e.RequestTime.Add(time.Duration(e.LatencyMs * float64(time.Millisecond)))
		e.RequestSize, e.ResponseSize = -1, -1
		if reqSize != nil {
			e.RequestSize = *reqSize
		}
		if respSize != nil {
			e.ResponseSize = *respSize
		}
		if target != nil {
			e.TargetLatencyMs = *target
		}
		if err := detail.Apply(&e, doc); err != nil {
			return nil, fmt.Errorf("event %s: detail: %w", e.ID, err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// PutProfiles implements apimeter.Store. The newest write of a profile
// wins; every write is kept until ClickHouse merges them.
func (s *Store) PutProfiles(ctx context.Context, ps []apimeter.Profile) error {
	if len(ps) == 0 {
		return nil
	}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO profiles (org, env, kind, id, company_id, modified_us, body, version)")
	if err != nil {
		return fmt.Errorf("store profiles: %w", err)
	}
	defer b.Abort()
	version := uint64(time.Now().UnixNano())
	for i, p := range ps {
		// Later profiles of one batch win over earlier ones.
		if err := b.Append(p.Org, p.Env, p.Kind, p.ID, p.CompanyID, p.ModifiedTime.UnixMicro(), string(p.Body), version+uint64(i)); err != nil {
			return fmt.Errorf("store %s profile %q: %w", p.Kind, p.ID, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("store profiles: %w", err)
	}
	return nil
}

// Profile implements apimeter.Store.
func (s *Store) Profile(ctx context.Context, org, env, kind, id string) (apimeter.Profile, error) {
	p := apimeter.Profile{Org: org, Env: env, Kind: kind, ID: id}
	var body string
	var us int64
	rows, err := s.conn.Query(ctx, `SELECT company_id, modified_us, body FROM profiles FINAL WHERE org = ? AND env = ? AND kind = ? AND id = ?`,
		org, env, kind, id)
	if err != nil {
		return p, fmt.Errorf("read %s profile: %w", kind, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return p, err
		}
		return p, apimeter.ErrNotFound
	}
	if err := rows.Scan(&p.CompanyID, &us, &body); err != nil {
		return p, err
	}
	p.ModifiedTime = time.UnixMicro(us).UTC()
	p.Body = json.RawMessage(body)
	return p, nil
}

// Close stops the writer after it has written every queued batch, then
// closes the connections.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.q.Close()
		s.bgCancel()
		<-s.bgDone
		err = errors.Join(s.conn.Close(), s.db.Close())
	})
	return err
}

// UsageRebuildSQL sums the events per org, env, quarter hour, user, company
// and API key, as identity.RebuildCountersFrom reads them; FINAL, so that a
// redelivered event counts once.
const UsageRebuildSQL = `SELECT org, env, toInt64(intDiv(toUInt32(ts), 900)) AS bucket, user_id, company_id, api_key_id,
  toInt64(sum(weight)),
  toInt64(sumIf(weight, ` + detail.IsErrorSQL + `)),
  toInt64(sum(weight * (ifNull(req_size, 0) + ifNull(resp_size, 0))))
FROM events FINAL GROUP BY org, env, bucket, user_id, company_id, api_key_id`
