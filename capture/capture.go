package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/eventcap"
	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/scrub"
)

// Sink receives batches of captured events, already scrubbed. Send is called
// from one goroutine at a time and must not keep the slice after it returns.
// An error means the batch is lost (a Sink retries inside Send if it wants
// to); it is counted in Stats.Failed. Close releases the Sink's resources.
type Sink interface {
	Send(ctx context.Context, events []apimeter.Event) error
	Close(ctx context.Context) error
}

// BorrowingSink is a Sink that keeps nothing of the events after Send
// returns (HTTPSink encodes them during Send). To such a Sink the
// middleware hands events whose bodies and headers point into its reused
// buffers, saving a copy and about 3 KB of garbage per event at the default
// body cap; any other Sink gets events it owns.
type BorrowingSink interface {
	Sink
	// BorrowsEvents promises that Send neither keeps the events nor any
	// string or slice in them after it returns.
	BorrowsEvents()
}

// Stats are a Capture's counters since it was created.
type Stats struct {
	Enqueued int64 // events put on the queue
	Queued   int64 // events on the queue now
	Sent     int64 // events the Sink accepted
	Dropped  int64 // events lost because the queue was full or closed
	Failed   int64 // events the Sink gave up on (Refused among them)
	// Refused counts the events the collector refused one by one (the
	// rest of their batch was sent); with the caps the capture applies, an
	// apimeter collector with default limits refuses none.
	Refused int64
	Skipped int64 // calls Options.Skip excluded
	Panics  int64 // panics recovered in Options callbacks
}

// Capture records API calls and sends them to a Sink. Build one with New,
// wrap handlers with Middleware, and call Close on shutdown.
type Capture struct {
	opts     Options
	caps     eventcap.Limits
	log      *slog.Logger
	scrub    *scrub.Sender // owned by run
	jwt      jwtDecoder
	subjects map[string]string // owned by run
	uri      []byte            // owned by run: appendRecord's URI
	weight   int64
	sampleP  float64
	queue    chan *record
	kick     chan struct{} // a batch is waiting
	kickAt   int
	borrow   bool // Sink is a BorrowingSink
	pool     sync.Pool
	stop     chan struct{}
	done     chan struct{}
	sendCtx  context.Context
	cancel   context.CancelFunc
	closed   atomic.Bool
	stopOnce sync.Once

	enqueued, sent, dropped, failed, refused, skipped, panics atomic.Int64
}

// New returns a Capture for opts and starts its sending goroutine.
func New(opts Options) (*Capture, error) {
	c, err := newCapture(opts)
	if err != nil {
		return nil, err
	}
	go c.run()
	return c, nil
}

// newCapture returns a Capture for opts without its sending goroutine.
func newCapture(opts Options) (*Capture, error) {
	if opts.Sink == nil {
		return nil, errors.New("capture: Options.Sink is required")
	}
	if opts.SampleRate < 0 || opts.SampleRate > 1 || math.IsNaN(opts.SampleRate) {
		return nil, fmt.Errorf("capture: SampleRate must be in (0, 1], got %v", opts.SampleRate)
	}
	if opts.SampleRate == 0 {
		opts.SampleRate = 1
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	jd, err := newJWTDecoder(opts.JWTKey, opts.JWTMethods)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	c := &Capture{
		opts:     opts,
		caps:     opts.Caps.OrDefaults(),
		log:      opts.Logger,
		scrub:    scrub.New(opts.SecretHeaders, opts.SecretParams, opts.MaxBodyBytes).NewSender(),
		jwt:      jd,
		subjects: map[string]string{},
		weight:   max(1, int64(math.Round(1/opts.SampleRate))),
		sampleP:  opts.SampleRate,
		queue:    make(chan *record, opts.QueueSize),
		kick:     make(chan struct{}, 1),
		kickAt:   max(1, min(opts.BatchSize, opts.QueueSize/2)),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	_, c.borrow = opts.Sink.(BorrowingSink)
	if hs, ok := opts.Sink.(*HTTPSink); ok && !hs.ownLog {
		hs.cfg.Logger = opts.Logger
	}
	c.sendCtx, c.cancel = context.WithCancel(context.Background())
	c.pool.New = func() any { return c.newRecord() }
	return c, nil
}

// Middleware wraps next so that its calls are captured. It is a
// func(http.Handler) http.Handler and composes with any router.
func (c *Capture) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.serve(next, w, r)
	})
}

// Stats returns the current counters.
func (c *Capture) Stats() Stats {
	return Stats{
		Enqueued: c.enqueued.Load(),
		Queued:   int64(len(c.queue)),
		Sent:     c.sent.Load(),
		Dropped:  c.dropped.Load(),
		Failed:   c.failed.Load(),
		Refused:  c.refused.Load(),
		Skipped:  c.skipped.Load(),
		Panics:   c.panics.Load(),
	}
}

// Close stops capturing, sends what is queued and closes the Sink. When ctx
// ends first, sending is abandoned, what is left is counted as failed, and
// ctx's error is returned. Calls captured while Close runs may be dropped.
func (c *Capture) Close(ctx context.Context) error {
	c.closed.Store(true)
	c.stopOnce.Do(func() { close(c.stop) })
	var err error
	select {
	case <-c.done:
	case <-ctx.Done():
		c.cancel()
		<-c.done
		err = ctx.Err()
	}
	c.cancel()
	// Calls that finished while the sender was stopping.
	for {
		select {
		case rec := <-c.queue:
			c.dropped.Add(1)
			c.release(rec)
			continue
		default:
		}
		break
	}
	return errors.Join(err, c.opts.Sink.Close(ctx))
}

func (c *Capture) serve(next http.Handler, w http.ResponseWriter, r *http.Request) {
	if c.closed.Load() || (c.sampleP < 1 && rand.Float64() >= c.sampleP) {
		next.ServeHTTP(w, r)
		return
	}
	rec := c.pool.Get().(*record)
	rec.start = time.Now()
	// Direct map lookups: the keys are canonical, so Header.Get's
	// canonicalisation is wasted work on every request.
	rec.id = ""
	if c.opts.TrustTransactionID {
		if v := r.Header[moesif.TransactionIDHeader]; len(v) > 0 && len(v[0]) <= 256 {
			rec.id = v[0]
		}
	}
	if rec.id == "" {
		rec.id = newID()
	}
	if !c.opts.DisableTransactionID {
		w.Header()[moesif.TransactionIDHeader] = []string{rec.id}
	}
	rec.method, rec.host, rec.requestURI = r.Method, r.Host, r.RequestURI
	if !strings.HasPrefix(rec.requestURI, "/") && r.URL != nil {
		// Absolute form ("GET http://host/path", which servers must
		// accept): the URI is built from the scheme, host and this.
		rec.requestURI = r.URL.RequestURI()
	}
	rec.path, rec.query = r.URL.Path, r.URL.RawQuery
	rec.tls = r.TLS != nil
	rec.remoteAddr = r.RemoteAddr
	rec.reqLen = r.ContentLength
	// The event carries the id it was given, not a caller's other one.
	rec.reqHeaders = appendHeaders(rec.reqHeaders[:0], r.Header, moesif.TransactionIDHeader)
	rec.reqHeaders = append(rec.reqHeaders, apimeter.Header{Name: moesif.TransactionIDHeader, Value: rec.id})

	body := r.Body
	if c.opts.LogBody && body != nil && body != http.NoBody {
		rec.body.rc = body
		r.Body = &rec.body
	}
	// A call that ends in a panic is recorded all the same: a handler
	// breaking off its answer (ReverseProxy on an upstream reset, or on a
	// client that went away mid-body) panics with http.ErrAbortHandler,
	// and a client must not escape metering by closing early. The panic
	// goes on after.
	returned := false
	defer func() {
		if returned {
			return
		}
		v := recover()
		c.endAbnormally(rec, w, r, body, v)
		if v != nil {
			panic(v)
		}
		// v == nil: runtime.Goexit, which goes on by itself.
	}()
	next.ServeHTTP(rec.rw.wrap(w), r)
	returned = true
	if r.Body == &rec.body {
		r.Body = body
	}
	rec.end = rec.start.Add(time.Since(rec.start))
	if !rec.rw.wroteHeader {
		// The server writes 200 for a handler that wrote nothing.
		rec.rw.recordHeader(http.StatusOK, w.Header())
	}
	if rec.clientGone {
		// The handler returned after writes to a client that had gone.
		rec.outcome = OutcomeAborted
	}
	c.finish(rec, w, r)
}

// endAbnormally records a call whose handler panicked (with v) or exited:
// the status as sent, the body bytes written, and how it ended, aborted
// when the client had gone away, reset when the handler broke off with
// http.ErrAbortHandler, panic otherwise. A call whose status was never
// sent is recorded as 499 (nginx's "client closed request") when the
// client went away, else as 0 (no answer).
func (c *Capture) endAbnormally(rec *record, w http.ResponseWriter, r *http.Request, body io.ReadCloser, v any) {
	if r.Body == &rec.body {
		r.Body = body
	}
	rec.end = rec.start.Add(time.Since(rec.start))
	switch {
	case rec.clientGone || r.Context().Err() != nil:
		rec.outcome = OutcomeAborted
	case v == http.ErrAbortHandler:
		rec.outcome = OutcomeReset
	default:
		rec.outcome = OutcomePanic
	}
	if !rec.rw.wroteHeader {
		status := 0
		if rec.outcome == OutcomeAborted {
			status = 499
		}
		rec.rw.wroteHeader, rec.status = true, status
		rec.respHeaders = rec.respHeaders[:0]
	}
	c.finish(rec, w, r)
}

// isClientGone reports whether a copy to the client failed because the
// client's connection is gone.
func isClientGone(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

// writeFailed reports whether a Write error of a ResponseWriter means the
// client is gone, rather than a handler's mistake.
func writeFailed(err error) bool {
	return err != nil && !errors.Is(err, http.ErrBodyNotAllowed) && !errors.Is(err, http.ErrContentLength) && !errors.Is(err, http.ErrHijacked)
}

// finish runs the callbacks and enqueues rec.
func (c *Capture) finish(rec *record, w http.ResponseWriter, r *http.Request) {
	res := Response{Status: rec.status, Header: w.Header(), Size: rec.respSize}
	if c.opts.Skip != nil && c.callBool(c.opts.Skip, r, res) {
		c.skipped.Add(1)
		c.release(rec)
		return
	}
	if c.opts.RouteFunc != nil {
		rec.route = c.callRoute(r)
	} else {
		p := r.Pattern
		if p == "" && c.opts.Routes != nil {
			p = c.matchRoute(r)
		}
		rec.route = routeOf(p)
	}
	if c.opts.ClientIP != nil {
		// Only an IP address: a header a client wrote may hold anything.
		if ip := c.callIP(r); isIP(ip) {
			rec.remoteAddr = strings.TrimSpace(ip)
		}
	}
	if c.opts.IdentifyUser != nil {
		rec.user = c.callString(c.opts.IdentifyUser, r, res)
	}
	if rec.user == "" {
		if v := r.Header["Authorization"]; len(v) > 0 {
			rec.auth = v[0]
		}
	}
	if c.opts.IdentifyCompany != nil {
		rec.company = c.callString(c.opts.IdentifyCompany, r, res)
	}
	if c.opts.SessionToken != nil {
		rec.session = c.callString(c.opts.SessionToken, r, res)
	}
	if c.opts.Metadata != nil {
		rec.metadata = c.callMeta(r, res)
	}
	if c.opts.Target != nil {
		rec.target = c.callTarget(r, res)
	}
	if c.closed.Load() {
		c.dropped.Add(1)
		c.release(rec)
		return
	}
	select {
	case c.queue <- rec:
		c.enqueued.Add(1)
		// Wake the sender only when a batch is ready (or on its tick):
		// waking it for every call cost more CPU than building the events.
		if len(c.queue) >= c.kickAt {
			select {
			case c.kick <- struct{}{}:
			default:
			}
		}
	default:
		c.dropped.Add(1)
		c.release(rec)
	}
}

// routeOf turns a ServeMux pattern such as "GET example.com/a/{id}" into
// the route template "/a/{id}".
func routeOf(pattern string) string {
	if pattern == "" {
		return ""
	}
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		pattern = strings.TrimLeft(pattern[i:], " \t")
	} else if i := strings.IndexByte(pattern, '\t'); i >= 0 {
		pattern = strings.TrimLeft(pattern[i:], " \t")
	}
	if i := strings.IndexByte(pattern, '/'); i > 0 {
		pattern = pattern[i:]
	}
	return pattern
}

func (c *Capture) recovered(what string) {
	if v := recover(); v != nil {
		c.panics.Add(1)
		c.log.Error("capture: callback panicked", "callback", what, "panic", fmt.Sprint(v))
	}
}

func (c *Capture) callString(f func(*http.Request, Response) string, r *http.Request, res Response) (s string) {
	defer c.recovered("identify")
	return f(r, res)
}

func (c *Capture) callBool(f func(*http.Request, Response) bool, r *http.Request, res Response) (b bool) {
	defer c.recovered("Skip")
	return f(r, res)
}

func (c *Capture) callMeta(r *http.Request, res Response) (m map[string]any) {
	defer c.recovered("Metadata")
	return c.opts.Metadata(r, res)
}

func (c *Capture) callTarget(r *http.Request, res Response) (t Target) {
	defer c.recovered("Target")
	return c.opts.Target(r, res)
}

// matchRoute is the pattern Routes would serve r with, for a call
// answered before it reached the mux.
func (c *Capture) matchRoute(r *http.Request) (s string) {
	defer c.recovered("Routes")
	_, s = c.opts.Routes.Handler(r)
	return s
}

func (c *Capture) callRoute(r *http.Request) (s string) {
	defer c.recovered("RouteFunc")
	return c.opts.RouteFunc(r)
}

func (c *Capture) callIP(r *http.Request) (s string) {
	defer c.recovered("ClientIP")
	return c.opts.ClientIP(r)
}

func (c *Capture) callMask(e *apimeter.Event) {
	defer c.recovered("Mask")
	c.opts.Mask(e)
}

// maxBatchBodyBytes ends a batch early when its bodies add up to this
// much, so that large MaxBodyBytes cannot make a batch too big for the
// collector (32 MiB by default) however large BatchSize is.
const maxBatchBodyBytes = 8 << 20

// run is the sending goroutine: it builds events from records, batches them
// and hands batches to the Sink, until Close. It wakes when a batch is
// waiting or every FlushInterval, not for each call.
func (c *Capture) run() {
	defer close(c.done)
	batch := make([]apimeter.Event, 0, c.opts.BatchSize)
	// held are the records a borrowing Sink's batch points into; they are
	// reused only after Send returned.
	var held []*record
	var bodyBytes int // of the batch's bodies, against maxBatchBodyBytes
	// An HTTPSink without Mask gets its batch encoded straight from the
	// records into its stream, and each record is reused at once.
	var hs *HTTPSink
	var stream *batchStream
	var ev apimeter.Event // the stream's Event, for records that need one
	if s, ok := c.opts.Sink.(*HTTPSink); ok && c.opts.Mask == nil {
		hs, stream = s, s.newStream()
	}
	pending := func() int {
		if stream != nil {
			return stream.n
		}
		return len(batch)
	}
	var fails failLog
	tick := time.NewTicker(c.opts.FlushInterval)
	defer tick.Stop()
	defer fails.flush(c.log)
	defer func() {
		for _, rec := range held {
			c.release(rec)
		}
	}()
	flush := func() {
		n := pending()
		if n == 0 {
			return
		}
		var err error
		if stream != nil {
			var body []byte
			var spans []span
			if body, spans, err = stream.finish(); err == nil {
				err = hs.deliver(c.sendCtx, body, spans)
			}
		} else {
			err = c.opts.Sink.Send(c.sendCtx, batch)
		}
		var pe *PartialError
		if errors.As(err, &pe) {
			c.sent.Add(int64(pe.Sent))
			c.refused.Add(int64(pe.Refused))
			c.sendFailed(&fails, n-pe.Sent, err)
		} else if err != nil {
			c.sendFailed(&fails, n, err)
		} else {
			c.sent.Add(int64(n))
			fails.recovered(c.log)
		}
		clear(batch)
		batch = batch[:0]
		bodyBytes = 0
		for _, rec := range held {
			c.release(rec)
		}
		clear(held)
		held = held[:0]
	}
	add := func(rec *record) {
		bodyBytes += len(rec.reqBody) + len(rec.respBody)
		switch {
		case stream != nil:
			stream.next()
			if !strings.HasSuffix(rec.requestURI, rec.query) {
				// A request URI that does not end with its query (not one
				// net/http's server parses) goes through an Event, whose
				// scrubber finds the query wherever it is.
				c.fillEvent(&ev, rec, true)
				stream.json = appendEvent(stream.json, &ev)
			} else {
				stream.json = c.appendRecord(stream.json, rec)
			}
			c.release(rec)
			if err := stream.written(); err != nil {
				c.sendFailed(&fails, stream.n, err)
				stream.n, bodyBytes = 0, 0
				return
			}
		case c.borrow:
			batch = append(batch, apimeter.Event{})
			c.fillEvent(&batch[len(batch)-1], rec, true)
			held = append(held, rec)
		default:
			batch = append(batch, apimeter.Event{})
			c.fillEvent(&batch[len(batch)-1], rec, false)
			c.release(rec)
		}
		if pending() >= c.opts.BatchSize || bodyBytes >= maxBatchBodyBytes {
			flush()
		}
	}
	// drain takes what is queued now, without waiting.
	drain := func() {
		for {
			select {
			case rec := <-c.queue:
				if c.sendCtx.Err() != nil {
					c.failed.Add(1)
					c.release(rec)
					continue
				}
				add(rec)
			default:
				return
			}
		}
	}
	for {
		select {
		case <-c.kick:
			drain() // full batches go out; a remainder waits for the tick
		case <-tick.C:
			drain()
			flush()
		case <-c.stop:
			drain()
			if c.sendCtx.Err() != nil {
				c.failed.Add(int64(pending()))
				return
			}
			flush()
			return
		}
	}
}

func (c *Capture) release(rec *record) {
	rec.reset()
	c.pool.Put(rec)
}

// failLogEvery is the least time between two log lines about failed
// sends: a Sink that is down (a collector, Kafka brokers) fails batch after
// batch, and a line per batch would flood the log for no more information.
const failLogEvery = 30 * time.Second

// failLog rate-limits the sender's log of failed batches: the first
// failure is logged at once, the next ones at most every failLogEvery with
// what failed in between. It belongs to run.
type failLog struct {
	last            time.Time // of the last line logged
	events, batches int       // failed since that line
	err             error     // the last failure
	down            bool      // failing since the last success
}

// sendFailed counts n events as failed and logs as failLog allows.
func (c *Capture) sendFailed(f *failLog, n int, err error) {
	c.failed.Add(int64(n))
	f.events += n
	f.batches++
	f.err, f.down = err, true
	if now := time.Now(); f.last.IsZero() || now.Sub(f.last) >= failLogEvery {
		f.last = now
		f.flush(c.log)
	}
}

// flush logs the failures not logged yet.
func (f *failLog) flush(log *slog.Logger) {
	if f.batches == 0 {
		return
	}
	log.Warn("capture: send failed", "events", f.events, "batches", f.batches, "err", f.err)
	f.events, f.batches = 0, 0
}

// recovered notes a batch sent after failures.
func (f *failLog) recovered(log *slog.Logger) {
	if !f.down {
		return
	}
	f.flush(log)
	f.down, f.last = false, time.Time{}
	log.Info("capture: sending again")
}
