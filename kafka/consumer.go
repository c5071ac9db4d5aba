package kafka

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/eventcap"
	"github.com/apimeter/apimeter/httpmsg"
	"github.com/apimeter/apimeter/moesif"
)

// Format is how calls are written in the topic.
type Format string

// The formats.
const (
	// FormatAPIM is Azure API Management's pair of messages per call, as APIM's
	// log-to-eventhub policy writes them (package httpmsg).
	FormatAPIM Format = "apim"
	// FormatJSON is one record per event, or per batch of events, in the
	// collector's JSON schema.
	FormatJSON Format = "json"
)

// ParseFormat checks a format name.
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case FormatAPIM, FormatJSON:
		return Format(s), nil
	}
	return "", fmt.Errorf("format %q: want apim or json", s)
}

// Ingester stores events durably: server.Server.Ingest (identify, scrub,
// store, as the collector does), or a collector over HTTP.
type Ingester interface {
	Ingest(ctx context.Context, events []apimeter.Event) (apimeter.AppendResult, error)
}

// Defaults of ConsumerConfig.
const (
	DefaultPairTTL     = 2 * time.Minute
	DefaultMaxPending  = 200_000
	DefaultMaxPoll     = 10_000
	DefaultPairWindow  = 100_000
	DefaultLogInterval = 30 * time.Second
	DefaultDrain       = 30 * time.Second
)

// ConsumerConfig configures a Consumer. Topic, Group, Ingester and (for the
// store) Org and Env are required.
type ConsumerConfig struct {
	Conn
	Topic string
	Group string
	// Format of the records; empty means FormatAPIM.
	Format Format
	// Org and Env are where the calls belong. With an Ingester that posts
	// to a collector they may be empty: the application id decides there.
	Org, Env string
	Ingester Ingester
	// Limits are the per-event caps applied before storing (zero fields:
	// the collector's defaults). A call over a cap is cut down to them
	// and marked (package eventcap), not dropped: a record cannot be sent
	// back, and a collector would refuse the whole batch for it.
	Limits eventcap.Limits
	// PairTTL is how long a request waits for its response (and a response
	// for its request), in record time, before it is stored alone and
	// flagged. Zero means DefaultPairTTL.
	PairTTL time.Duration
	// PairWindow is the window in arrival order: a half is stored alone
	// only once PairTTL has passed in record time and, besides, either
	// PairWindow records have been read after it or PairTTL has passed
	// since it arrived. A replayed or lagging hub delivers records later
	// than their timestamps say; record time alone split such calls into
	// halves. Zero means DefaultPairWindow.
	PairWindow int64
	// MaxPending bounds the halves waiting for their other half; beyond it
	// the oldest are stored alone and flagged. Zero means DefaultMaxPending.
	MaxPending int
	// MaxPoll is the most records handled (and stored) per batch. Zero
	// means DefaultMaxPoll.
	MaxPoll int
	// Registerer, when set, gets the pipeline's health metrics.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// LogInterval is how often the health figures are logged. Zero means
	// DefaultLogInterval; negative never.
	LogInterval time.Duration
	// Drain bounds how long a stopping consumer keeps trying to store its
	// last batch. Zero means DefaultDrain.
	Drain time.Duration
	// SessionTimeout is how long the group waits for a silent member
	// before moving its partitions. Zero means franz-go's 45 s.
	SessionTimeout time.Duration
	// ClientOpts are added to the franz-go client's options.
	ClientOpts []kgo.Opt
}

// Stats are a Consumer's counters since it started.
type Stats struct {
	Consumed        int64 // records read
	Paired          int64 // calls made of a request and its response
	OrphanRequests  int64 // requests stored without a response (status 0)
	OrphanResponses int64 // responses stored without a request
	Malformed       int64 // records skipped as unreadable
	Truncated       int64 // events cut down to Limits (and marked) before storing
	Stored          int64 // events newly stored
	Duplicates      int64 // events the store already had (redelivery)
	Pending         int   // halves waiting for their other half now
	// Partitions holds the figures of each assigned partition.
	Partitions map[int32]PartitionStats
}

// PartitionStats are one partition's figures since it was assigned.
type PartitionStats struct {
	Consumed, Malformed int64
	Lag                 int64 // records behind the high watermark at the last fetch
	Next                int64 // offset after the last record read, -1 before any
	Committed           int64 // last offset committed, -1 before any
}

// Consumer reads calls from a topic as a member of a consumer group and
// stores them exactly once. Build one with NewConsumer and call Run.
type Consumer struct {
	cfg ConsumerConfig
	log *slog.Logger

	mu      sync.Mutex // guards everything below
	parts   map[int32]*partState
	pending *pendingTable
	out     []apimeter.Event // the batch being read
	resolve []*slot          // what it completes, once stored
	// free holds the event and resolve slices of stored batches, reused.
	free        [][]apimeter.Event
	freeResolve [][]*slot
	// inflight are the batches being stored, oldest first; they are
	// committed in that order.
	inflight []*inflight
	stats    Stats
	ctx      context.Context // Run's
	// decoded are the messages of the fetch in hand, in the order
	// EachPartition gives its records (APIM format); next is the next one
	// to pair. Only Run's goroutine touches them.
	decoded []decodedMsg
	next    int
	// now is when the fetch in hand is handled: the arrival time of its
	// halves.
	now time.Time
	cl  *kgo.Client
}

// NewConsumer checks cfg and returns a Consumer.
func NewConsumer(cfg ConsumerConfig) (*Consumer, error) {
	if cfg.Topic == "" || cfg.Group == "" {
		return nil, errors.New("kafka consumer: a topic and a group are required")
	}
	if cfg.Ingester == nil {
		return nil, errors.New("kafka consumer: no Ingester to store the calls")
	}
	if cfg.Format == "" {
		cfg.Format = FormatAPIM
	}
	if _, err := ParseFormat(string(cfg.Format)); err != nil {
		return nil, err
	}
	if cfg.PairTTL <= 0 {
		cfg.PairTTL = DefaultPairTTL
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.PairWindow <= 0 {
		cfg.PairWindow = DefaultPairWindow
	}
	if cfg.MaxPoll <= 0 {
		cfg.MaxPoll = DefaultMaxPoll
	}
	if cfg.LogInterval == 0 {
		cfg.LogInterval = DefaultLogInterval
	}
	if cfg.Drain <= 0 {
		cfg.Drain = DefaultDrain
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Consumer{cfg: cfg, log: cfg.Logger.With("topic", cfg.Topic, "group", cfg.Group),
		parts: map[int32]*partState{}, pending: newPendingTable()}
	// Events are large; a batch's worth, reused (with the slices of stored
	// batches, see free), keeps growslice and its copies off the hot path.
	c.out = make([]apimeter.Event, 0, cfg.MaxPoll)
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(collector{c}); err != nil {
			return nil, fmt.Errorf("kafka consumer: register metrics: %w", err)
		}
	}
	return c, nil
}

// Stats returns the consumer's counters.
func (c *Consumer) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Pending = c.pending.live
	s.Partitions = make(map[int32]PartitionStats, len(c.parts))
	for id, p := range c.parts {
		s.Partitions[id] = PartitionStats{Consumed: p.consumed, Malformed: p.malformed, Lag: p.lag(), Next: p.next, Committed: p.committed}
	}
	return s
}

// Run consumes until ctx is canceled or the client fails for good. On
// cancellation it stores the batch in hand, commits, leaves the group and
// returns nil; halves still waiting for their pair are not committed, so
// the next owner of their partitions reads them again.
func (c *Consumer) Run(ctx context.Context) error {
	opts, err := c.cfg.Conn.opts()
	if err != nil {
		return err
	}
	opts = append(opts,
		kgo.ConsumerGroup(c.cfg.Group),
		kgo.ConsumeTopics(c.cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(c.assigned),
		kgo.OnPartitionsRevoked(c.revoked),
		kgo.OnPartitionsLost(c.revoked),
		kgo.FetchMaxWait(500*time.Millisecond),
	)
	if c.cfg.Format == FormatAPIM {
		opts = append(opts, kgo.Balancers(pairBalancer{}))
	}
	if c.cfg.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(c.cfg.SessionTimeout), kgo.HeartbeatInterval(min(3*time.Second, c.cfg.SessionTimeout/5)))
	}
	opts = append(opts, c.cfg.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka consumer: %w", err)
	}
	c.log.Info("kafka consumer started", "brokers", c.cfg.Brokers, "format", c.cfg.Format)
	c.ctx, c.cl = ctx, cl
	lastLog := time.Now()
	var lastEnds time.Time
	var runErr error
	for {
		polled := time.Now()
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		if len(c.inflight) > 0 {
			// A caught-up consumer must not sit on a stored batch until
			// the next records come: the wait ends when it is stored, so
			// that it is committed (and counted) at once.
			stored := c.inflight[0].stored
			go func() {
				select {
				case <-stored:
					cancel()
				case <-pctx.Done():
				}
			}()
		}
		fs := cl.PollRecords(pctx, c.cfg.MaxPoll)
		cancel()
		if fs.IsClientClosed() {
			break
		}
		stopping := ctx.Err() != nil
		if time.Since(lastEnds) >= endsEvery {
			c.refreshEnds(ctx, cl)
			lastEnds = time.Now()
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				c.log.Warn("kafka fetch", "partition", p, "err", err)
			}
		})
		t0 := time.Now()
		if c.cfg.Format == FormatAPIM {
			c.decodeAll(fs)
		}
		c.mu.Lock()
		c.now = t0
		fs.EachPartition(c.handlePartition)
		c.decoded = c.decoded[:0]
		c.expire(t0)
		events := len(c.out)
		t1 := time.Now()
		// The batches before this one were storing while this one was
		// read and parsed. This one starts storing; those stored are
		// committed, and with too many in flight the oldest is awaited.
		c.startStore()
		err := c.reap(maxInflight)
		c.mu.Unlock()
		if n := fs.NumRecords(); n > 0 {
			c.log.Debug("batch", "records", n, "events", events, "poll", t0.Sub(polled), "parse", t1.Sub(t0), "wait_store", time.Since(t1))
		}
		if err != nil {
			runErr = err
			break
		}
		if stopping {
			break
		}
		// Rebalance callbacks run here, between polls; they finish the
		// batch in flight before partitions go.
		cl.AllowRebalance()
		if c.cfg.LogInterval > 0 && time.Since(lastLog) >= c.cfg.LogInterval {
			c.logHealth("kafka consumer health")
			lastLog = time.Now()
		}
	}
	c.mu.Lock()
	if err := c.reap(0); err != nil && runErr == nil {
		runErr = err
	}
	c.mu.Unlock()
	cl.AllowRebalance()
	cl.Close()
	c.logHealth("kafka consumer stopped")
	return runErr
}

// endsEvery is how often the partitions' end offsets are listed: the
// pair TTL's clock for caught-up partitions, and their lag.
const endsEvery = 500 * time.Millisecond

// refreshEnds lists the end offsets of the assigned partitions. A failure
// leaves the older figures, which only delays expiry.
func (c *Consumer) refreshEnds(ctx context.Context, cl *kgo.Client) {
	c.mu.Lock()
	ids := make([]int32, 0, len(c.parts))
	for id := range c.parts {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = c.cfg.Topic
	for _, id := range ids {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition = id
		rp.Timestamp = -1 // the end
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	at := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	resp, err := req.RequestWith(rctx, cl)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("list end offsets", "err", err)
		}
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range resp.Topics {
		for _, rp := range t.Partitions {
			if p := c.parts[rp.Partition]; p != nil && rp.ErrorCode == 0 {
				p.end, p.endAt = rp.Offset, at
			}
		}
	}
}

func (c *Consumer) assigned(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for _, p := range m[c.cfg.Topic] {
		c.parts[p] = &partState{next: -1, hwm: -1, end: -1, committed: -1, assignedAt: now}
	}
	c.log.Info("partitions assigned", "partitions", m[c.cfg.Topic])
}

// revoked forgets what was read from partitions this member no longer
// owns. Everything stored was committed after its batch; what still waits
// for its pair is read again by the next owner, from the committed offset.
func (c *Consumer) revoked(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.reap(0); err != nil {
		c.log.Error("store the batches in flight before giving partitions up", "err", err)
	}
	gone := map[int32]bool{}
	for _, p := range m[c.cfg.Topic] {
		gone[p] = true
		delete(c.parts, p)
	}
	c.pending.dropPartitions(gone)
	c.log.Info("partitions revoked", "partitions", m[c.cfg.Topic])
}

func (c *Consumer) handlePartition(fp kgo.FetchTopicPartition) {
	p := c.parts[fp.Partition]
	if p == nil {
		// Records of a partition revoked meanwhile: its next owner reads
		// them again.
		if c.cfg.Format == FormatAPIM {
			c.next += len(fp.Records)
		}
		return
	}
	p.hwm = fp.HighWatermark
	for _, r := range fp.Records {
		p.seen = true
		p.next = r.Offset + 1
		if r.Timestamp.After(p.lastTS) {
			p.lastTS = r.Timestamp
		}
		p.consumed++
		c.stats.Consumed++
		var err error
		if c.cfg.Format == FormatJSON {
			err = c.handleJSON(r)
		} else {
			err = c.handleAPIM(p, r)
		}
		if err != nil {
			p.malformed++
			c.stats.Malformed++
			c.log.Warn("malformed message skipped", "partition", r.Partition, "offset", r.Offset, "err", err)
		}
	}
}

// decodedMsg is a record's message, or why it could not be read.
type decodedMsg struct {
	m   httpmsg.Message
	err error
}

// decodeAll decodes the fetch's records on all cores before they are
// paired in order: decoding needs nothing but the record, pairing needs
// the pending table.
func (c *Consumer) decodeAll(fs kgo.Fetches) {
	var recs []*kgo.Record
	fs.EachPartition(func(fp kgo.FetchTopicPartition) {
		recs = append(recs, fp.Records...)
	})
	c.decoded, c.next = slices.Grow(c.decoded[:0], len(recs))[:len(recs)], 0
	workers := runtime.GOMAXPROCS(0)
	if len(recs) < 512 || workers == 1 {
		for i, r := range recs {
			c.decoded[i].m, c.decoded[i].err = httpmsg.Decode(r.Value)
		}
		return
	}
	per := (len(recs) + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := 0; lo < len(recs); lo += per {
		hi := min(lo+per, len(recs))
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				c.decoded[i].m, c.decoded[i].err = httpmsg.Decode(recs[i].Value)
			}
		})
	}
	wg.Wait()
}

func (c *Consumer) handleAPIM(p *partState, r *kgo.Record) error {
	d := &c.decoded[c.next]
	c.next++
	m, err := d.m, d.err
	*d = decodedMsg{}
	if err != nil {
		if v := bytes.TrimSpace(r.Value); len(v) > 0 && (v[0] == '{' || v[0] == '[') {
			return fmt.Errorf("%w (the record is JSON: the gateway's --kafka-format json; read it with --format json)", err)
		}
		return err
	}
	if other, ok := c.pending.byID[m.ID]; ok {
		if other.msg.Kind == m.Kind {
			// The same half twice (a producer retry): the first one waits.
			return nil
		}
		c.pending.take(m.ID)
		c.resolve = append(c.resolve, other.slot)
		req, resp := &other.msg, &m
		reqTS, respTS := other.ts, r.Timestamp
		if m.Kind == httpmsg.Request {
			req, resp, reqTS, respTS = resp, req, respTS, reqTS
		}
		c.emit(httpmsg.ToEvent(req, resp, reqTS, respTS))
		c.stats.Paired++
		return nil
	}
	s := &slot{offset: r.Offset}
	p.queue = append(p.queue, s)
	c.pending.add(&half{msg: m, ts: r.Timestamp, seq: c.stats.Consumed, at: c.now, partition: r.Partition, slot: s})
	return nil
}

func (c *Consumer) emit(e apimeter.Event) {
	c.out = append(c.out, e)
	last := &c.out[len(c.out)-1]
	last.Org, last.Env = c.cfg.Org, c.cfg.Env
}

func (c *Consumer) handleJSON(r *kgo.Record) error {
	v := bytes.TrimSpace(r.Value)
	if bytes.HasPrefix(v, []byte("request:")) || bytes.HasPrefix(v, []byte("response:")) {
		return errors.New("the record is an APIM message (request:/response:), not JSON: read it with --format apim")
	}
	var ms []moesif.Event
	switch {
	case len(v) > 0 && v[0] == '[':
		var err error
		if ms, err = moesif.DecodeBatch(v, moesif.Limits{MaxEvents: 10_000}); err != nil {
			if err := json.Unmarshal(v, &ms); err != nil {
				return fmt.Errorf("json batch: %w", err)
			}
		}
	default:
		ms = make([]moesif.Event, 1)
		if err := json.Unmarshal(v, &ms[0]); err != nil {
			return fmt.Errorf("json event: %w", err)
		}
	}
	events := make([]apimeter.Event, 0, len(ms))
	for i := range ms {
		e, err := ms[i].ToEvent(c.cfg.Org, c.cfg.Env, i)
		if err != nil {
			return fmt.Errorf("json event: %w", err)
		}
		events = append(events, e)
	}
	moesif.NumberRepeats(ms, events)
	c.out = append(c.out, events...)
	return nil
}

// expire stores alone the halves that waited longer than PairTTL, in
// record time. Each partition has a clock: when the partition was last
// seen caught up (its listed end offset reached), or else the time of the
// last record read from it; the pending halves are judged by the oldest
// clock. So reading a backlog, or a stall of the store, does not flag a
// request whose response is merely further back in the other partition.
func (c *Consumer) expire(now time.Time) {
	wm := now
	for _, p := range c.parts {
		switch {
		case !p.seen:
			// Nothing read yet: give it a TTL, then let an idle
			// partition hold nothing back.
			if now.Sub(p.assignedAt) < c.cfg.PairTTL {
				wm = time.Time{}
			}
			continue
		case p.end >= 0 && p.next >= p.end:
			if p.endAt.Before(wm) {
				wm = p.endAt
			}
		default:
			if p.lastTS.Before(wm) {
				wm = p.lastTS
			}
		}
		if wm.IsZero() {
			break
		}
	}
	cutoff := time.Time{}
	if !wm.IsZero() {
		cutoff = wm.Add(-c.cfg.PairTTL)
	}
	for _, h := range c.pending.expire(cutoff, c.stats.Consumed-c.cfg.PairWindow, now.Add(-c.cfg.PairTTL), c.cfg.MaxPending) {
		c.resolve = append(c.resolve, h.slot)
		if h.msg.Kind == httpmsg.Request {
			c.emit(httpmsg.ToEvent(&h.msg, nil, h.ts, time.Time{}))
			c.stats.OrphanRequests++
		} else {
			c.emit(httpmsg.ToEvent(nil, &h.msg, time.Time{}, h.ts))
			c.stats.OrphanResponses++
		}
	}
}

// maxInflight is the most batches being stored while the next is read.
// A fetch often holds only one partition's records, requests or
// responses, so batches alternate between few events and many; several in
// flight keep the store busy through the small ones.
const maxInflight = 4

// inflight is a batch being stored while the next one is read.
type inflight struct {
	events  []apimeter.Event
	resolve []*slot         // halves of earlier batches this one completes
	next    map[int32]int64 // per partition, the offset after the batch
	stored  chan struct{}   // closed once res and err are set
	res     apimeter.AppendResult
	err     error
}

// startStore hands the batch in hand to goroutines that store it.
func (c *Consumer) startStore() {
	f := &inflight{events: c.out, resolve: c.resolve, next: make(map[int32]int64, len(c.parts)), stored: make(chan struct{})}
	for id, p := range c.parts {
		if p.next >= 0 {
			f.next[id] = p.next
		}
	}
	for i := range f.events {
		if c.cfg.Limits.Truncate(&f.events[i]) {
			c.stats.Truncated++
		}
	}
	c.out, c.resolve = nil, nil
	if n := len(c.free); n > 0 {
		c.out, c.free = c.free[n-1], c.free[:n-1]
	} else {
		c.out = make([]apimeter.Event, 0, c.cfg.MaxPoll)
	}
	if n := len(c.freeResolve); n > 0 {
		c.resolve, c.freeResolve = c.freeResolve[n-1], c.freeResolve[:n-1]
	}
	c.inflight = append(c.inflight, f)
	if len(f.events) == 0 {
		close(f.stored)
		return
	}
	ctx := c.ctx
	// The batch goes to the store in chunks, all at once: the store's
	// group commit then fills one appender while it flushes another,
	// instead of waiting for one batch's rows before taking the next.
	chunks := (len(f.events) + storeChunk - 1) / storeChunk
	results := make([]apimeter.AppendResult, chunks)
	errs := make(chan error, chunks)
	for i := 0; i < chunks; i++ {
		part := f.events[i*storeChunk : min((i+1)*storeChunk, len(f.events))]
		go func() { errs <- c.store(ctx, part, &results[i]) }()
	}
	go func() {
		var first error
		for range chunks {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		for _, r := range results {
			f.res.Stored = append(f.res.Stored, r.Stored...)
			f.res.Duplicates += r.Duplicates
		}
		f.err = first
		close(f.stored)
	}()
}

// storeChunk is the most events in one call of the Ingester.
const storeChunk = 1000

// store stores events, retrying until they are stored: an offset is
// committed only after what it covers is. A stopping consumer keeps trying
// for Drain, then gives up.
func (c *Consumer) store(ctx context.Context, events []apimeter.Event, res *apimeter.AppendResult) error {
	sctx := context.WithoutCancel(ctx)
	var stopAt time.Time
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		r, err := c.cfg.Ingester.Ingest(sctx, events)
		if err == nil {
			*res = r
			return nil
		}
		if ctx.Err() != nil {
			if stopAt.IsZero() {
				stopAt = time.Now()
			}
			if time.Since(stopAt) > c.cfg.Drain {
				return fmt.Errorf("kafka consumer: store %d events while stopping: %w", len(events), err)
			}
		}
		c.log.Error("store events; retrying", "events", len(events), "err", err, "wait", wait)
		time.Sleep(wait)
	}
}

// reap commits the stored batches at the head of the queue in flight,
// waiting for the oldest while more than keep are in flight.
func (c *Consumer) reap(keep int) error {
	for len(c.inflight) > 0 {
		f := c.inflight[0]
		if len(c.inflight) > keep {
			<-f.stored
		} else {
			select {
			case <-f.stored:
			default:
				return nil
			}
		}
		c.inflight = c.inflight[1:]
		if f.err != nil {
			return f.err
		}
		c.finish(f)
	}
	return nil
}

// finish commits what a stored batch completes.
func (c *Consumer) finish(f *inflight) {
	c.stats.Stored += int64(len(f.res.Stored))
	c.stats.Duplicates += int64(f.res.Duplicates)
	for _, s := range f.resolve {
		s.resolved = true
	}
	c.commit(f.next)
	clear(f.events)
	c.free = append(c.free, f.events[:0])
	clear(f.resolve)
	c.freeResolve = append(c.freeResolve, f.resolve[:0])
}

// commit commits, per partition, the offset before which everything is
// stored or skipped: the oldest half still waiting, or the end of the
// stored batch.
func (c *Consumer) commit(next map[int32]int64) {
	offsets := map[int32]kgo.EpochOffset{}
	for id, p := range c.parts {
		end, ok := next[id]
		if !ok {
			continue
		}
		o := min(p.commitOffset(), end)
		if o > p.committed {
			offsets[id] = kgo.EpochOffset{Epoch: -1, Offset: o}
		}
	}
	if len(offsets) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), 10*time.Second)
	defer cancel()
	c.cl.CommitOffsetsSync(cctx, map[string]map[int32]kgo.EpochOffset{c.cfg.Topic: offsets},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				c.log.Warn("commit offsets", "err", err)
				return
			}
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if p.ErrorCode != 0 {
						c.log.Warn("commit offset", "partition", p.Partition, "code", p.ErrorCode)
						continue
					}
					if ps := c.parts[p.Partition]; ps != nil {
						ps.committed = offsets[p.Partition].Offset
					}
				}
			}
		})
}

func (c *Consumer) logHealth(msg string) {
	s := c.Stats()
	ids := make([]int32, 0, len(s.Partitions))
	for id := range s.Partitions {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	lag := make([]string, 0, len(ids))
	for _, id := range ids {
		ps := s.Partitions[id]
		lag = append(lag, fmt.Sprintf("p%d:consumed=%d,malformed=%d,lag=%d,committed=%d", id, ps.Consumed, ps.Malformed, ps.Lag, ps.Committed))
	}
	c.log.Info(msg, "consumed", s.Consumed, "paired", s.Paired, "orphan_requests", s.OrphanRequests,
		"orphan_responses", s.OrphanResponses, "malformed", s.Malformed, "pending", s.Pending,
		"stored", s.Stored, "duplicates", s.Duplicates, "truncated", s.Truncated, "partitions", lag)
}
