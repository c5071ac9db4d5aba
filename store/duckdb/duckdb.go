// Package duckdb is apimeter's embedded store: events in one DuckDB file,
// written through DuckDB's appender by a single writer goroutine that groups
// concurrent batches into one commit (group commit), and deduplicated by
// (org, env, id) within a configurable horizon.
package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"
	"github.com/zeebo/xxh3"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/store/detail"
	"github.com/apimeter/apimeter/store/internal/groupcommit"
)

// DefaultDedupeHorizon is how long an event id is remembered for idempotent
// ingest unless configured otherwise.
const DefaultDedupeHorizon = 7 * 24 * time.Hour

// Options configure a Store. The zero value is usable.
type Options struct {
	// DedupeHorizon is how long after ingest an (org, env, id) is still
	// recognised as a duplicate. Zero means DefaultDedupeHorizon.
	DedupeHorizon time.Duration
	// DedupeMemory bounds the memory of the dedupe set, in bytes (16 per
	// slot; at most 7/8 of the slots are used). Ids of the horizon it has
	// no room for are checked against the events table, so idempotency
	// holds whatever the bound. Zero means DefaultDedupeMemory.
	DedupeMemory int64
	// MaxGroupRows bounds how many rows one commit takes. Zero means 65536.
	MaxGroupRows int
	// DailyInterval is how often the rollup tables (see BuildRollups) are
	// brought up to date. Zero means DefaultDailyInterval; a negative value
	// turns the background passes off (BuildRollups still works).
	DailyInterval time.Duration
	// Retention is how long events are kept: a UTC day of events is
	// deleted, with its rollups, once all of it is older than Retention
	// (retention.go). Zero keeps everything.
	Retention time.Duration
	// RetentionInterval is how often expired days are looked for. Zero
	// means DefaultRetentionInterval; a negative value turns the background
	// passes off (DropExpired still works).
	RetentionInterval time.Duration
	// NoDedupe turns the idempotency check off (benchmarks only).
	NoDedupe bool
	// MemoryLimit bounds DuckDB's memory (e.g. "512MB"); empty means
	// DefaultMemoryLimit.
	MemoryLimit string
	Logger      *slog.Logger
}

// Store is a DuckDB-backed apimeter.Store.
type Store struct {
	db    *sql.DB
	lanes [2]*lane
	opts  Options
	log   *slog.Logger

	q *groupcommit.Queue[*batch, apimeter.AppendResult] // the group commit's queue

	// The filler (writer goroutine) hands filled lanes to the committer
	// through jobs and gets them back through free; the committer reports
	// each job's keys back through reports.
	jobs    chan *job
	free    chan *lane
	reports chan report
	// inflight are the keys of jobs handed to the committer and not yet
	// reported; only the filler touches it.
	inflight map[xxh3.Uint128]struct{}
	// beforeFlush, when set (tests), runs before each flush; an error
	// fails the commit as a failed flush would.
	beforeFlush func() error
	added       atomic.Int64 // batches given to add, for tests

	// seen holds the keys (Store.key) of the events ingested within the
	// horizon, as many as its bound allows; only the writer goroutine
	// touches it.
	seen      *seenSet
	seed      uint64 // of the keys' hash, random per Open
	lastSweep time.Time
	// drained is the writer's buffer of the batches it adds at once.
	drained []*appendReq

	// pending holds, per batch in Append, when it was registered (before
	// its rows got their ingest time); see oldestPending.
	pendMu  sync.Mutex
	pending map[*batch]time.Time

	dailyMu   sync.Mutex // one BuildRollups at a time
	dailyDone chan struct{}
	stopDaily context.CancelFunc // cancels a daily pass under way

	health health

	closeOnce sync.Once
}

// batch is one Append call's events on their way to the writer.
type batch struct {
	events []apimeter.Event
	// rows are the events' column values, built by the caller so that the
	// single writer only appends and commits.
	rows [][]driver.Value
	keys []xxh3.Uint128
}

// appendReq is a batch in the group commit's queue.
type appendReq = groupcommit.Request[*batch, apimeter.AppendResult]

// Columns of the events table, in appender order. Everything that is
// grouped or filtered on has a column of its own; the rest is in detail.
const eventColumns = `id, org, env, ingested_at, ts, api_name, method, uri, path, route,
status, latency_ms, target_latency_ms, req_size, resp_size,
user_id, company_id, api_key_id, client_ip, user_agent, target_url, weight, detail`

// schema: id, uri and detail, the long strings of every event, are stored
// with FSST, which DuckDB's own analysis picked for them anyway; naming it
// spares every checkpoint the trial of the other methods on the largest
// columns (load runs of 1,000,000 events: 85-88 k events/s against 67-73 k,
// docs/performance.md).
const schema = `
CREATE TABLE IF NOT EXISTS events (
  id VARCHAR NOT NULL USING COMPRESSION fsst, -- event id, unique per (org, env)
  org VARCHAR NOT NULL,
  env VARCHAR NOT NULL,
  ingested_at TIMESTAMP NOT NULL,
  ts TIMESTAMP NOT NULL,        -- request time (UTC)
  api_name VARCHAR NOT NULL,    -- Apigee's apiproxy
  method VARCHAR NOT NULL,
  uri VARCHAR NOT NULL USING COMPRESSION fsst,
  path VARCHAR NOT NULL,
  route VARCHAR NOT NULL,       -- route template, '' when unknown
  status INTEGER NOT NULL,      -- 0: no response
  latency_ms DOUBLE NOT NULL,   -- total response time
  target_latency_ms DOUBLE,     -- time in the upstream, when measured
  req_size BIGINT,              -- NULL when unknown
  resp_size BIGINT,
  user_id VARCHAR NOT NULL,
  company_id VARCHAR NOT NULL,
  api_key_id VARCHAR NOT NULL,  -- fingerprint, never the key
  client_ip VARCHAR NOT NULL,
  user_agent VARCHAR NOT NULL,
  target_url VARCHAR NOT NULL,
  weight BIGINT NOT NULL,       -- calls this event stands for (sampling)
  detail VARCHAR NOT NULL USING COMPRESSION fsst -- JSON: headers, bodies, query, tags, metadata, ...
);
CREATE TABLE IF NOT EXISTS profiles (
  org VARCHAR NOT NULL,
  env VARCHAR NOT NULL,
  kind VARCHAR NOT NULL,
  id VARCHAR NOT NULL,
  company_id VARCHAR NOT NULL,
  modified_time TIMESTAMP NOT NULL,
  body VARCHAR NOT NULL,
  PRIMARY KEY (org, env, kind, id)
);
`

// Open opens (creating if needed) the DuckDB database at path and starts
// its writer. Only one process may open a database file at a time.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if opts.DedupeHorizon == 0 {
		opts.DedupeHorizon = DefaultDedupeHorizon
	}
	if opts.RetentionInterval == 0 {
		opts.RetentionInterval = DefaultRetentionInterval
	}
	if opts.DedupeMemory == 0 {
		opts.DedupeMemory = DefaultDedupeMemory
	}
	if opts.MaxGroupRows == 0 {
		opts.MaxGroupRows = 65536
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	memLimit, err := memoryLimitSetting(opts.MemoryLimit)
	if err != nil {
		return nil, err
	}
	connector, err := duckdb.NewConnector(path, nil)
	if err != nil {
		return nil, fmt.Errorf("open duckdb %s: %w", path, err)
	}
	db := sql.OpenDB(connector)
	if _, err := db.ExecContext(ctx, Settings+"; "+memLimit); err != nil {
		db.Close()
		return nil, fmt.Errorf("configure duckdb: %w", err)
	}
	if err := migrate(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	s := &Store{
		db: db, opts: opts, log: opts.Logger,
		q:        groupcommit.NewQueue[*batch, apimeter.AppendResult](1024),
		jobs:     make(chan *job),
		free:     make(chan *lane, 2),
		reports:  make(chan report, 4),
		seen:     newSeenSet(opts.DedupeMemory),
		seed:     rand.Uint64(),
		inflight: map[xxh3.Uint128]struct{}{},
		pending:  map[*batch]time.Time{},
	}
	for i := range s.lanes {
		ln, err := openLane(ctx, connector)
		if err != nil {
			s.closeLanes()
			db.Close()
			return nil, err
		}
		s.lanes[i] = ln
		s.free <- ln
	}
	if err := s.loadSeen(ctx); err != nil {
		s.closeLanes()
		db.Close()
		return nil, err
	}
	go s.writer()
	go s.committer()
	s.dailyDone = make(chan struct{})
	if opts.DailyInterval >= 0 || opts.Retention > 0 && opts.RetentionInterval > 0 {
		every := opts.DailyInterval
		if every == 0 {
			every = DefaultDailyInterval
		}
		if every < 0 || opts.Retention > 0 && opts.RetentionInterval > 0 && opts.RetentionInterval < every {
			every = opts.RetentionInterval
		}
		var ctx context.Context
		ctx, s.stopDaily = context.WithCancel(context.Background())
		go s.dailyLoop(ctx, every)
	} else {
		s.stopDaily = func() {}
		close(s.dailyDone)
	}
	return s, nil
}

// DB returns the database for read queries (Metrics API, usage).
func (s *Store) DB() *sql.DB { return s.db }

// key is the dedupe key of (org, env, id): a 128-bit hash seeded at
// random when the store opens, so that no sender can choose ids whose keys
// collide (see slot). buf is scratch space, returned for reuse.
func (s *Store) key(buf []byte, org, env, id string) (xxh3.Uint128, []byte) {
	buf = append(append(append(append(append(buf[:0], org...), 0), env...), 0), id...)
	return xxh3.Hash128Seed(buf, s.seed), buf
}

// loadSeen rebuilds the dedupe set from the events ingested within the
// horizon, so that idempotency holds across restarts: the newest minutes
// that fill at most 3/4 of the set's bound; older ids of the horizon are
// checked against the table (onDisk).
func (s *Store) loadSeen(ctx context.Context) error {
	s.lastSweep = time.Now()
	if s.opts.NoDedupe {
		return nil
	}
	var buf []byte
	err := s.seen.load(ctx, s.db, time.Now().Add(-s.opts.DedupeHorizon).UTC(), seenSource{
		counts: `SELECT epoch(ingested_at)::BIGINT // 60 AS m, count(*) FROM events
WHERE ingested_at >= ? GROUP BY m ORDER BY m DESC`,
		keys: `SELECT org, env, id, epoch(ingested_at)::BIGINT // 60 FROM events WHERE ingested_at >= ?`,
		arg:  func(t time.Time) any { return t },
		scan: func(rows *sql.Rows) (k xxh3.Uint128, m int32, err error) {
			var org, env, id string
			if err = rows.Scan(&org, &env, &id, &m); err == nil {
				k, buf = s.key(buf, org, env, id)
			}
			return k, m, err
		},
	})
	if err != nil {
		return fmt.Errorf("load dedupe set: %w", err)
	}
	s.health.setDedupe(s.seen.Len(), s.seen.Bytes())
	return nil
}

// minuteTime is the start of unix minute m, in UTC as the table holds it.
func minuteTime(m int32) time.Time { return time.Unix(int64(m)*60, 0).UTC() }

// Append implements apimeter.Store. It returns after the events are
// committed to the database file (DuckDB syncs its write-ahead log on
// commit), sharing the commit with every batch that arrived meanwhile.
func (s *Store) Append(ctx context.Context, events []apimeter.Event) (apimeter.AppendResult, error) {
	if len(events) == 0 {
		return apimeter.AppendResult{}, nil
	}
	req := &batch{events: events, rows: make([][]driver.Value, len(events))}
	// Registered before the rows get their ingest time, and until the
	// answer: BuildRollups relies on it (oldestPending).
	s.pendMu.Lock()
	s.pending[req] = time.Now().UTC()
	s.pendMu.Unlock()
	defer func() {
		s.pendMu.Lock()
		delete(s.pending, req)
		s.pendMu.Unlock()
	}()
	// Everything that can be done per event outside the writer is done
	// here, on the caller's goroutine, in parallel with other callers.
	now := time.Now().UTC()
	flat := make([]driver.Value, 0, len(events)*columnCount)
	var buf []byte
	for i := range events {
		start := len(flat)
		flat, buf = RowValues(flat, buf, &events[i], now)
		req.rows[i] = flat[start:len(flat):len(flat)]
	}
	if !s.opts.NoDedupe {
		req.keys = make([]xxh3.Uint128, len(events))
		for i := range events {
			req.keys[i], buf = s.key(buf, events[i].Org, events[i].Env, events[i].ID)
		}
	}
	return s.q.Submit(ctx, req)
}

// writer is the group commit's filler: it fills a job (a lane) with the
// queued batches until the committer takes it, and hands it over.
func (s *Store) writer() {
	groupcommit.Run(s.q, (*filler)(s), s.jobs)
	close(s.jobs)
}

// filler is the Store as groupcommit.Run's Writer.
type filler Store

// Begin takes a free lane: the one the committer is not flushing.
func (f *filler) Begin() *job {
	return &job{lane: <-f.free, began: time.Now(), max: f.opts.MaxGroupRows}
}

func (f *filler) Add(j *job, r *appendReq) {
	s := (*Store)(f)
	s.add(j, s.drain(r, j.rows)...)
}

// Commit hands j to the committer.
func (f *filler) Commit(j *job) { f.jobs <- j }

func (f *filler) Idle() {
	s := (*Store)(f)
	s.sweep(time.Now())
	s.health.setDedupe(s.seen.Len(), s.seen.Bytes())
}

// drain returns first and, when the dedupe set must be completed from the
// events table, the batches queued behind it, as many as fit in a job
// holding rows rows, so that one query looks up the ids of them all.
// Otherwise batches are added one at a time, so that the committer takes
// the job as soon as it is free.
func (s *Store) drain(first *appendReq, rows int) []*appendReq {
	s.drained = append(s.drained[:0], first)
	if !s.lookingUp(time.Now()) {
		return s.drained
	}
	rows += len(first.Batch.events)
	for rows < s.opts.MaxGroupRows {
		r := s.q.Poll()
		if r == nil {
			break
		}
		s.drained = append(s.drained, r)
		rows += len(r.Batch.events)
	}
	return s.drained
}

// add appends the new events of reqs to j's lane: the first half of a
// commit, done by the writer goroutine while the committer flushes the
// other lane.
func (s *Store) add(j *job, reqs ...*appendReq) {
	s.absorbReports()
	var old map[xxh3.Uint128]struct{}
	var checkErr error
	if !s.opts.NoDedupe {
		n := 0
		for _, r := range reqs {
			n += len(r.Batch.events)
		}
		s.seen.Reserve(n)
		old, checkErr = s.onDisk(reqs, j.began)
	}
	for _, req := range reqs {
		s.addOne(j, req, old, checkErr)
	}
}

// addOne adds one batch to j; old are the keys of events stored within the
// horizon that the dedupe set has forgotten; checkErr, when not nil, says
// they could not be known, and fails the batch.
func (s *Store) addOne(j *job, req *appendReq, old map[xxh3.Uint128]struct{}, checkErr error) {
	s.added.Add(1)
	en := &entry{req: req}
	j.group = append(j.group, en)
	if checkErr != nil {
		en.err = fmt.Errorf("dedupe check: %w", checkErr)
		return
	}
	minute := minuteOf(j.began)
	for i := range req.Batch.events {
		if !s.opts.NoDedupe {
			k := req.Batch.keys[i]
			dup := s.seen.Has(k)
			pending := false
			if dup || s.seen.below != 0 { // once it forgot, it may lack keys in flight
				_, pending = s.inflight[k]
			}
			if dup || pending {
				en.res.Duplicates++
				if pending {
					en.lean = append(en.lean, k)
				}
				continue
			}
			if _, ok := old[k]; ok {
				en.res.Duplicates++
				continue
			}
			// Marked seen now, so that the next job, filled while this
			// one commits, finds it; forgotten again if the commit fails
			// (absorbReports).
			s.seen.Add(k, minute)
			s.inflight[k] = struct{}{}
			en.keys = append(en.keys, k)
		}
		en.rows = append(en.rows, i)
		en.res.Stored = append(en.res.Stored, &req.Batch.events[i])
		j.rows++
		if !j.broken {
			if err := j.lane.app.AppendRow(req.Batch.rows[i]...); err != nil {
				en.err = fmt.Errorf("event %d: %w", i, err)
				j.broken = true
			}
		}
	}
}

// absorbReports applies the committer's reports: the keys of committed
// batches stay seen, those of failed ones are forgotten so that a retry is
// stored. The committer sends a job's report before it answers the job's
// callers, so a retry always finds the report of the failure it follows.
func (s *Store) absorbReports() {
	for {
		select {
		case r := <-s.reports:
			for _, k := range r.ok {
				delete(s.inflight, k)
			}
			for _, k := range r.failed {
				delete(s.inflight, k)
				s.seen.Remove(k)
			}
		default:
			return
		}
	}
}

// committer flushes the lanes the writer filled, in order, one at a time:
// the second half of a commit.
func (s *Store) committer() {
	defer s.q.Finished()
	var prevFailed map[xxh3.Uint128]struct{}
	for j := range s.jobs {
		prevFailed = s.commit(j, prevFailed)
		s.free <- j.lane
	}
}

// flush runs the test hook, if any, then flushes the lane.
func (s *Store) flush(ln *lane) error {
	if s.beforeFlush != nil {
		if err := s.beforeFlush(); err != nil {
			return err
		}
	}
	return ln.app.Flush()
}

// commit flushes j's lane in one transaction and answers j's callers. When
// that fails and the job holds several batches, each is committed again
// alone, so that a batch whose rows the database refuses fails by itself
// and the batches that shared its commit are stored. A batch that counted
// events as duplicates of ones whose commit failed (prevFailed: the keys of
// the job before that failed) is answered with an error, so that its
// sender retries. commit returns the keys of j's failed batches.
func (s *Store) commit(j *job, prevFailed map[xxh3.Uint128]struct{}) map[xxh3.Uint128]struct{} {
	defer func() {
		s.log.Debug("commit", "batches", len(j.group), "took", time.Since(j.began))
	}()
	var err error
	if !j.broken {
		err = s.flush(j.lane)
	}
	if j.broken || err != nil {
		if err != nil {
			s.log.Error("commit events", "batches", len(j.group), "err", err)
		}
		j.lane.reset(s.log)
		if len(j.group) == 1 && err != nil {
			j.group[0].err = err
		} else {
			s.commitEach(j)
		}
	}
	// Health sees the store fail only when no batch of the job could be
	// committed: a batch whose own rows are refused is the sender's fault.
	var jobErr error
	stored := 0
	for _, en := range j.group {
		if en.err == nil {
			stored += len(en.rows)
		} else if jobErr == nil {
			jobErr = en.err
		}
	}
	if stored > 0 {
		jobErr = nil
	}
	s.health.commitDone(time.Since(j.began), stored, jobErr)
	failed := map[xxh3.Uint128]struct{}{}
	var rep report
	for _, en := range j.group {
		if en.err != nil {
			for _, k := range en.keys {
				failed[k] = struct{}{}
			}
			rep.failed = append(rep.failed, en.keys...)
		} else {
			rep.ok = append(rep.ok, en.keys...)
		}
	}
	s.reports <- rep
	for _, en := range j.group {
		if en.err != nil {
			en.req.Answer(apimeter.AppendResult{}, fmt.Errorf("commit events: %w", en.err))
			continue
		}
		if leansOn(en.lean, prevFailed) || leansOn(en.lean, failed) {
			en.req.Answer(apimeter.AppendResult{}, errors.New("commit events: an earlier commit holding some of these events failed"))
			continue
		}
		en.req.Answer(en.res, nil)
	}
	return failed
}

// commitEach commits each batch of j alone, after a commit of them all
// failed; each batch's failure is its own.
func (s *Store) commitEach(j *job) {
	for _, en := range j.group {
		if en.err != nil || len(en.rows) == 0 {
			continue
		}
		for _, i := range en.rows {
			if err := j.lane.app.AppendRow(en.req.Batch.rows[i]...); err != nil {
				en.err = fmt.Errorf("event %d: %w", i, err)
				break
			}
		}
		if en.err == nil {
			en.err = s.flush(j.lane)
		}
		if en.err != nil {
			s.log.Error("commit batch alone", "events", len(en.req.Batch.events), "err", en.err)
			j.lane.reset(s.log)
		}
	}
}

func leansOn(lean []xxh3.Uint128, failed map[xxh3.Uint128]struct{}) bool {
	for _, k := range lean {
		if _, ok := failed[k]; ok {
			return true
		}
	}
	return false
}

// sweep forgets ids older than the horizon, once an hour.
func (s *Store) sweep(now time.Time) {
	if s.opts.NoDedupe || now.Sub(s.lastSweep) < time.Hour {
		return
	}
	s.lastSweep = now
	s.seen.Forget(minuteOf(now.Add(-s.opts.DedupeHorizon)))
}

// lookingUp says whether the dedupe set has forgotten ids of the horizon,
// which onDisk must then look up in the events table.
func (s *Store) lookingUp(now time.Time) bool {
	return !s.opts.NoDedupe && s.seen.below > minuteOf(now.Add(-s.opts.DedupeHorizon))
}

// onDisk completes the dedupe set from the events table once the set has
// forgotten ids of the horizon to keep to its bound: of the events of reqs
// that the set does not hold, it returns the keys of those the table holds
// within the horizon. It is one query per (org, env) of the group, limited
// to the ingest times the set forgot so that DuckDB reads only those row
// groups (their ingest-time ranges, zone maps, exclude the others).
func (s *Store) onDisk(reqs []*appendReq, now time.Time) (map[xxh3.Uint128]struct{}, error) {
	if !s.lookingUp(now) {
		return nil, nil
	}
	type scope struct{ org, env string }
	ids := map[scope][]string{}
	for _, r := range reqs {
		for i, k := range r.Batch.keys {
			if s.seen.Has(k) {
				continue
			}
			if _, pending := s.inflight[k]; pending {
				continue
			}
			e := &r.Batch.events[i]
			sc := scope{e.Org, e.Env}
			ids[sc] = append(ids[sc], e.ID)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A row's ingest time is taken before its batch reaches the writer,
	// whose minute the set records: every forgotten key's row is before
	// the minute below.
	lo, hi := now.Add(-s.opts.DedupeHorizon).UTC(), minuteTime(s.seen.below)
	old := map[xxh3.Uint128]struct{}{}
	var buf []byte
	for sc, list := range ids {
		s.health.diskCheck()
		rows, err := s.db.QueryContext(ctx, `SELECT id FROM events WHERE org = ? AND env = ?
AND ingested_at >= ? AND ingested_at < ? AND id IN (SELECT unnest(?::VARCHAR[]))`, sc.org, sc.env, lo, hi, list)
		if err != nil {
			return nil, fmt.Errorf("look up %d ids in the events table: %w", len(list), err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("look up ids in the events table: %w", err)
			}
			var k xxh3.Uint128
			k, buf = s.key(buf, sc.org, sc.env, id)
			old[k] = struct{}{}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("look up ids in the events table: %w", err)
		}
	}
	return old, nil
}

func nullSize(n int64) driver.Value {
	if n < 0 {
		return nil
	}
	return n
}

// RowValues appends the column values of e, in the events table's column
// order, to dst. ingested is the ingest time recorded with the row; buf is
// scratch space for the detail JSON, returned for reuse.
func RowValues(dst []driver.Value, buf []byte, e *apimeter.Event, ingested time.Time) ([]driver.Value, []byte) {
	var target driver.Value
	if e.TargetLatencyMs > 0 {
		target = e.TargetLatencyMs
	}
	buf = detail.Append(buf[:0], e)
	return append(dst,
		e.ID, e.Org, e.Env, ingested, e.RequestTime.UTC(), e.APIName, e.Method, e.URI, e.Path, e.Route,
		int32(e.Status), e.LatencyMs, target, nullSize(e.RequestSize), nullSize(e.ResponseSize),
		e.UserID, e.CompanyID, e.APIKeyID, e.ClientIP, e.UserAgent, e.TargetURL, e.Weight, string(buf),
	), buf
}

// Settings are applied to the database when it is opened. The checkpoint
// threshold is raised from DuckDB's 16 MB so that a steady stream of small
// commits does not rewrite the open row group over and over (about one
// checkpoint per row group of events); the write-ahead log replays what was
// not checkpointed after a crash, which takes a few seconds at most.
// Checkpointing exactly at row-group boundaries instead was measured and
// not kept (docs/performance.md).
const Settings = "SET checkpoint_threshold = '128MB'"

// columnCount is the number of columns of the events table.
const columnCount = 23

// Schema is the DDL of apimeter's tables.
const Schema = schema

// Events implements apimeter.Store.
func (s *Store) Events(ctx context.Context, f apimeter.EventFilter) ([]apimeter.Event, error) {
	where, args := detail.Filter(f)
	add := func(cond string, v any) {
		where = append(where, cond)
		args = append(args, v)
	}
	if !f.From.IsZero() {
		add("ts >= ?", f.From.UTC())
	}
	if !f.To.IsZero() {
		add("ts < ?", f.To.UTC())
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	// The newest limit events all have a request time at or after the
	// limit-th newest one's, found first from the time column alone (an
	// aggregate: a top-N's sort cost twice as much). A bound on ts lets
	// DuckDB skip every row group before it (the events are in ingest
	// order) when it reads the whole rows; without it, a customer's few
	// calls spread over a day have it decode a day of rows. The rows at
	// or after it are read unsorted and ordered here, unless ties at that
	// time make them many.
	cond := strings.Join(where, " AND ")
	tx, err := s.db.BeginTx(context.WithoutCancel(ctx), nil) // one snapshot for both; see stats.RunRollups
	if err != nil {
		return nil, fmt.Errorf("query events: %w", err)
	}
	defer tx.Rollback()
	var oldest sql.NullTime
	if err := tx.QueryRowContext(ctx, `SELECT list_min(max(ts, `+strconv.Itoa(limit)+`)) FROM events WHERE `+cond, args...).Scan(&oldest); err != nil {
		return nil, fmt.Errorf("query events: %w", err)
	}
	if !oldest.Valid {
		return nil, nil
	}
	most := 4*limit + 100
	out, err := readEvents(ctx, tx, `SELECT `+eventColumns+` FROM events WHERE `+cond+` AND ts >= ? LIMIT ?`, append(args, oldest.Time, most+1)...)
	if err != nil {
		return nil, err
	}
	if len(out) > most {
		return readEvents(ctx, tx, `SELECT `+eventColumns+` FROM events WHERE `+cond+` AND ts >= ? ORDER BY ts DESC, id DESC LIMIT ?`, append(args, oldest.Time, limit)...)
	}
	slices.SortFunc(out, func(a, b apimeter.Event) int {
		if c := b.RequestTime.Compare(a.RequestTime); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID) // DuckDB orders VARCHAR by bytes, as Go does
	})
	return out[:min(len(out), limit)], nil
}

// readEvents runs q in tx and reads its events.
func readEvents(ctx context.Context, tx *sql.Tx, q string, args ...any) ([]apimeter.Event, error) {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query events: %w", err)
	}
	defer rows.Close()
	var out []apimeter.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func scanEvent(rows *sql.Rows) (apimeter.Event, error) {
	var e apimeter.Event
	var ingested time.Time
	var doc string
	var reqSize, respSize sql.NullInt64
	var target sql.NullFloat64
	var status int32
	err := rows.Scan(&e.ID, &e.Org, &e.Env, &ingested, &e.RequestTime, &e.APIName, &e.Method, &e.URI, &e.Path, &e.Route,
		&status, &e.LatencyMs, &target, &reqSize, &respSize,
		&e.UserID, &e.CompanyID, &e.APIKeyID, &e.ClientIP, &e.UserAgent, &e.TargetURL, &e.Weight, &doc)
	if err != nil {
		return e, fmt.Errorf("scan event: %w", err)
	}
	e.Status = int(status)
	e.RequestTime = e.RequestTime.UTC()
	e.ResponseTime = e.RequestTime.Add(time.Duration(e.LatencyMs * float64(time.Millisecond)))
	e.RequestSize, e.ResponseSize = -1, -1
	if reqSize.Valid {
		e.RequestSize = reqSize.Int64
	}
	if respSize.Valid {
		e.ResponseSize = respSize.Int64
	}
	if target.Valid {
		e.TargetLatencyMs = target.Float64
	}
	if err := detail.Apply(&e, doc); err != nil {
		return e, fmt.Errorf("event %s: detail: %w", e.ID, err)
	}
	return e, nil
}

// PutProfiles implements apimeter.Store.
func (s *Store) PutProfiles(ctx context.Context, ps []apimeter.Profile) error {
	tx, err := s.beginTx(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO profiles (org, env, kind, id, company_id, modified_time, body) VALUES (?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, p := range ps {
		if _, err := stmt.ExecContext(ctx, p.Org, p.Env, p.Kind, p.ID, p.CompanyID, p.ModifiedTime.UTC(), string(p.Body)); err != nil {
			return fmt.Errorf("store %s profile %q: %w", p.Kind, p.ID, err)
		}
	}
	return tx.Commit()
}

// Profile implements apimeter.Store.
func (s *Store) Profile(ctx context.Context, org, env, kind, id string) (apimeter.Profile, error) {
	p := apimeter.Profile{Org: org, Env: env, Kind: kind, ID: id}
	var body string
	err := s.db.QueryRowContext(ctx, `SELECT company_id, modified_time, body FROM profiles WHERE org = ? AND env = ? AND kind = ? AND id = ?`,
		org, env, kind, id).Scan(&p.CompanyID, &p.ModifiedTime, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return p, apimeter.ErrNotFound
	}
	if err != nil {
		return p, err
	}
	p.Body = json.RawMessage(body)
	return p, nil
}

// Close stops the writer after it has written every queued batch, then
// closes the database.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.stopDaily()
		s.q.Close()
		<-s.dailyDone
		err = errors.Join(s.closeLanes(), s.db.Close())
		// Every goroutine of the store has ended and given its
		// connection back (the daily pass rolls back before it returns:
		// buildDay), so database/sql has closed them all and, with the
		// last one, DuckDB's database: the file can be opened again at
		// once. A connection still open here would keep the database
		// alive, and the next Open of the file would wait for it.
		if n := s.db.Stats().OpenConnections; n > 0 {
			err = errors.Join(err, fmt.Errorf("close: %d connections still open (a reader of DB still running?)", n))
		}
	})
	return err
}

// beginTx begins a transaction whose statements run under ctx, but which
// ctx's end does not roll back: database/sql would roll it back, and give
// its connection back, on a goroutine of its own, possibly after Close
// has closed the database, keeping DuckDB's database open behind it (the
// next Open of the file then waited for it). The caller's deferred
// Rollback does it, before it returns.
func (s *Store) beginTx(ctx context.Context) (*sql.Tx, error) {
	return s.db.BeginTx(context.WithoutCancel(ctx), nil)
}
