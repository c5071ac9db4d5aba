package capture

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/apimeter/apimeter"
)

// Defaults for HTTPSinkConfig.
const (
	DefaultBackoff        = 200 * time.Millisecond
	DefaultMaxBackoff     = 2 * time.Second
	DefaultAttemptTimeout = 10 * time.Second
	// DefaultCompressionLevel is gzip's fastest level: the capturing
	// service's CPU comes first.
	DefaultCompressionLevel = gzip.BestSpeed
)

// HTTPSinkConfig configures an HTTPSink.
type HTTPSinkConfig struct {
	// URL is the collector's base URL, e.g. "http://127.0.0.1:7070"; batches
	// go to URL + "/v1/events/batch". Required.
	URL string
	// ApplicationID is sent as X-Moesif-Application-Id. Required.
	ApplicationID string
	// Client sends the requests. Nil means a client of its own.
	Client *http.Client
	// MaxRetries bounds the retries of a batch after a network error, a
	// 5xx or a 429. Zero means no bound: a batch is retried until the
	// collector takes it or the context of Send ends (the Capture's, at
	// Close), so a collector that restarts loses nothing while the
	// Capture's queue has room; the queue bounds the memory, and calls
	// past it are dropped and counted. Negative means no retry. A 500
	// (the collector's own failure, which may be this batch's fault) is
	// retried at most internalRetries times, then the batch is split as
	// a refused one is.
	MaxRetries int
	// Backoff is the wait before the first retry; each retry doubles it, up
	// to MaxBackoff, and waits a random time between half of it and all of
	// it (jitter). Zero means DefaultBackoff / DefaultMaxBackoff.
	Backoff, MaxBackoff time.Duration
	// NoCompression sends batches without gzip: for a collector on the same
	// machine, where bandwidth is free and CPU is not.
	NoCompression bool
	// CompressionLevel is the gzip level: 1 (gzip.BestSpeed) to 9
	// (gzip.BestCompression), or gzip.HuffmanOnly (-2), with the constants
	// of github.com/klauspost/compress/gzip. Zero means
	// DefaultCompressionLevel. Compression is most of the CPU the sender
	// spends on an event: on 1 KiB JSON bodies level 1 takes about as long
	// as encoding the event and shrinks it about 6.5 times; higher levels
	// cost 5-15 % more CPU for 5-7 % smaller batches; HuffmanOnly saves a
	// quarter of the CPU but sends 4 times the bytes of level 1 (figures in
	// docs/performance.md).
	CompressionLevel int
	// AttemptTimeout bounds one POST. Zero means DefaultAttemptTimeout.
	AttemptTimeout time.Duration
	// Logger gets a line when the collector stops taking batches and
	// when it takes them again, and one per batch with refused events.
	// Nil means the Logger of the Capture the sink is given to.
	Logger *slog.Logger
}

// HTTPSink posts batches to an apimeter (or any Moesif-compatible)
// collector as a gzipped JSON array in Moesif's collector schema. It
// compresses with klauspost/compress at its fastest level: on the capturing
// machine, compression is the largest part of the sender's CPU, and that
// package did it in about a third of compress/gzip's time (see
// docs/performance.md).
type HTTPSink struct {
	cfg HTTPSinkConfig
	url string

	mu     sync.Mutex // guards stream
	stream *batchStream
	down   bool // retrying since the last batch taken; the sending goroutine's
	ownLog bool // Logger was given; else a Capture gives it its own
}

// NewHTTPSink returns an HTTPSink for cfg.
func NewHTTPSink(cfg HTTPSinkConfig) (*HTTPSink, error) {
	if cfg.URL == "" || cfg.ApplicationID == "" {
		return nil, errors.New("capture: HTTPSinkConfig needs URL and ApplicationID")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = DefaultAttemptTimeout
	}
	ownLog := cfg.Logger != nil
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.CompressionLevel == 0:
		cfg.CompressionLevel = DefaultCompressionLevel
	case cfg.CompressionLevel == gzip.HuffmanOnly,
		cfg.CompressionLevel >= gzip.BestSpeed && cfg.CompressionLevel <= gzip.BestCompression:
	default:
		return nil, fmt.Errorf("capture: CompressionLevel %d is not 1 to 9 or gzip.HuffmanOnly", cfg.CompressionLevel)
	}
	s := &HTTPSink{cfg: cfg, url: strings.TrimRight(cfg.URL, "/") + "/v1/events/batch", ownLog: ownLog}
	s.stream = s.newStream()
	return s, nil
}

// batchStream is one batch on its way to the collector: its JSON, handed
// to the compressor a chunk at a time rather than as one buffer of the
// whole batch (1.3 MB for 500 events with 1 KiB bodies), so that the chunk
// stays in cache and the process's other goroutines keep theirs. A stream
// is reused for batch after batch by one goroutine. It notes where each
// event's JSON starts and ends in the array's text, so that a batch the
// collector refuses can be split without encoding its events again.
type batchStream struct {
	json  []byte       // the JSON not yet compressed; all of it without gzip
	buf   bytes.Buffer // the compressed batch
	gz    *gzip.Writer // nil without compression
	n     int          // events in the batch
	done  int          // bytes of the array's text already compressed
	spans []span       // of each event in the array's text
}

// span is where one event's JSON is in a batch's array text.
type span struct{ start, end int }

func (s *HTTPSink) newStream() *batchStream {
	b := &batchStream{}
	if !s.cfg.NoCompression {
		// The level was checked by NewHTTPSink.
		b.gz, _ = gzip.NewWriterLevel(&b.buf, s.cfg.CompressionLevel)
	}
	return b
}

// next readies the stream for one more event's JSON, to be appended to
// b.json.
func (b *batchStream) next() {
	if b.n == 0 {
		b.json = append(b.json[:0], '[')
		b.done, b.spans = 0, b.spans[:0]
		if b.gz != nil {
			b.buf.Reset()
			b.gz.Reset(&b.buf)
		}
	} else {
		b.spans[b.n-1].end = b.done + len(b.json)
		b.json = append(b.json, ',')
	}
	b.spans = append(b.spans, span{start: b.done + len(b.json)})
	b.n++
}

// written compresses the JSON so far once it fills a chunk.
func (b *batchStream) written() error {
	if b.gz == nil || len(b.json) < gzipChunk {
		return nil
	}
	return b.compress()
}

func (b *batchStream) compress() error {
	if _, err := b.gz.Write(b.json); err != nil {
		return fmt.Errorf("gzip batch: %w", err)
	}
	b.done += len(b.json)
	b.json = b.json[:0]
	return nil
}

// finish ends the batch and returns its body, valid until the stream is
// used again, and the spans of its events (likewise).
func (b *batchStream) finish() ([]byte, []span, error) {
	if b.n > 0 {
		b.spans[b.n-1].end = b.done + len(b.json)
	}
	b.n = 0
	b.json = append(b.json, ']')
	if b.gz == nil {
		return b.json, b.spans, nil
	}
	if err := b.compress(); err != nil {
		return nil, nil, err
	}
	if err := b.gz.Close(); err != nil {
		return nil, nil, fmt.Errorf("gzip batch: %w", err)
	}
	return b.buf.Bytes(), b.spans, nil
}

// gzipChunk is how much encoded JSON is handed to the compressor at once.
const gzipChunk = 32 << 10

// Send posts events as one batch, retrying as configured. When the
// collector refuses some of them, the others are sent all the same and
// the error is a *PartialError.
func (s *HTTPSink) Send(ctx context.Context, events []apimeter.Event) error {
	if len(events) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.stream
	for i := range events {
		b.next()
		b.json = appendEvent(b.json, &events[i])
		if err := b.written(); err != nil {
			b.n = 0
			return err
		}
	}
	body, spans, err := b.finish()
	if err != nil {
		return err
	}
	return s.deliver(ctx, body, spans)
}

// PartialError is a Send of which only some events were delivered: the
// collector refused Refused of them one by one, as events it will never
// take, and took Sent; the others, if any, were not delivered (Err says
// why).
type PartialError struct {
	Sent, Refused int
	Err           error
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("%d events sent, %d refused by the collector: %v", e.Sent, e.Refused, e.Err)
}

func (e *PartialError) Unwrap() error { return e.Err }

// refusal is a collector's answer that it will not take a batch as it is
// because of what it holds: 400, 413, 422, or a 500 that persists. Index is the
// event it named (-1: none), Code the error code of apimeter's JSON error.
type refusal struct {
	status int
	code   string
	index  int
	msg    string
}

func (r *refusal) Error() string {
	return fmt.Sprintf("collector refused the batch with %d %s: %s", r.status, http.StatusText(r.status), r.msg)
}

// internalRetries is how often a 500 is retried before the batch is split:
// a collector's own failure that lasts may be caused by one of the events.
const internalRetries = 3

// deliver posts a batch, retrying as configured; when the collector
// refuses it, the batch is split and the parts sent, down to single events
// that are refused alone. spans locate the events in the array's text.
// It returns nil when every event was taken, else an error (a
// *PartialError when some were).
func (s *HTTPSink) deliver(ctx context.Context, body []byte, spans []span) error {
	err := s.postRetrying(ctx, body, len(spans))
	var rf *refusal
	if err == nil || !errors.As(err, &rf) {
		return err
	}
	// Refusals are rare: the array's text is recovered from the body
	// rather than kept for every batch.
	raw := body
	if !s.cfg.NoCompression {
		zr, zerr := gzip.NewReader(bytes.NewReader(body))
		if zerr != nil {
			return fmt.Errorf("split refused batch: %w", zerr)
		}
		if raw, zerr = io.ReadAll(zr); zerr != nil {
			return fmt.Errorf("split refused batch: %w", zerr)
		}
	}
	d := &delivery{s: s, raw: raw}
	d.split(ctx, append([]span(nil), spans...), rf)
	if d.refused == 0 && d.err == nil {
		return nil
	}
	if d.refused > 0 {
		s.cfg.Logger.Warn("capture: the collector refused events; the rest of their batch was sent", "refused", d.refused, "sent", d.sent, "last_refusal", d.last)
	}
	err = d.err
	if err == nil {
		err = d.last
	}
	return &PartialError{Sent: d.sent, Refused: d.refused, Err: err}
}

// delivery is the splitting of one refused batch.
type delivery struct {
	s             *HTTPSink
	raw           []byte // the batch's array text
	sent, refused int
	last          *refusal
	err           error // why some events were not delivered
	buf, gzbuf    bytes.Buffer
}

// split handles the refusal rf of the events at spans: the event it names
// is refused and the others sent again; without a name the batch is sent
// in two halves; a single event is refused.
func (d *delivery) split(ctx context.Context, spans []span, rf *refusal) {
	if d.err != nil {
		return
	}
	d.last = rf
	if len(spans) == 1 {
		d.refused++
		return
	}
	if rf.index >= 0 && rf.index < len(spans) && eventRefusal(rf.code) {
		d.refused++
		rest := append(spans[:rf.index:rf.index], spans[rf.index+1:]...)
		d.send(ctx, rest)
		return
	}
	half := len(spans) / 2
	d.send(ctx, spans[:half:half])
	d.send(ctx, spans[half:])
}

// send posts the events at spans as one batch, splitting it again if it
// is refused.
func (d *delivery) send(ctx context.Context, spans []span) {
	if d.err != nil || len(spans) == 0 {
		return
	}
	d.buf.Reset()
	d.buf.WriteByte('[')
	for i, sp := range spans {
		if i > 0 {
			d.buf.WriteByte(',')
		}
		d.buf.Write(d.raw[sp.start:sp.end])
	}
	d.buf.WriteByte(']')
	body := d.buf.Bytes()
	if !d.s.cfg.NoCompression {
		d.gzbuf.Reset()
		zw, _ := gzip.NewWriterLevel(&d.gzbuf, d.s.cfg.CompressionLevel)
		zw.Write(body)
		zw.Close()
		body = d.gzbuf.Bytes()
	}
	err := d.s.postRetrying(ctx, body, len(spans))
	var rf *refusal
	switch {
	case err == nil:
		d.sent += len(spans)
	case errors.As(err, &rf):
		d.split(ctx, spans, rf)
	default:
		d.err = err
	}
}

// eventRefusal reports whether an apimeter error code refuses the event
// its index names (rather than the batch's size, which is split in half).
func eventRefusal(code string) bool {
	switch code {
	case "", "batch_too_large", "body_too_large", "empty_batch", "invalid_batch", "malformed_json", "read_body", "unsupported_encoding":
		return false
	}
	return true
}

// postRetrying posts body, retrying as configured. A refusal comes back
// as a *refusal.
func (s *HTTPSink) postRetrying(ctx context.Context, body []byte, n int) error {
	backoff := s.cfg.Backoff
	for attempt := 0; ; attempt++ {
		retry, err := s.post(ctx, body, !s.cfg.NoCompression)
		if err == nil {
			if s.down {
				s.down = false
				s.cfg.Logger.Info("capture: the collector takes batches again", "attempts", attempt+1)
			}
			return nil
		}
		var rf *refusal
		if errors.As(err, &rf) && rf.status == http.StatusInternalServerError && attempt < internalRetries && s.cfg.MaxRetries >= 0 {
			retry = true
		} else if errors.As(err, &rf) {
			return err
		}
		if !retry || s.cfg.MaxRetries < 0 || s.cfg.MaxRetries > 0 && attempt >= s.cfg.MaxRetries || ctx.Err() != nil {
			return fmt.Errorf("post %d events (attempt %d): %w", n, attempt+1, err)
		}
		if attempt == 2 && !s.down {
			// One line per outage, not one per attempt.
			s.down = true
			s.cfg.Logger.Warn("capture: the collector does not take batches; retrying with backoff while the queue has room", "err", err)
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		s.cfg.Logger.Debug("capture: retrying batch", "attempt", attempt+1, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("post %d events: %w (last error: %v)", n, ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, s.cfg.MaxBackoff)
	}
}

// post sends body once; retry says whether another attempt may succeed.
// A refusal is a *refusal.
func (s *HTTPSink) post(ctx context.Context, body []byte, gzipped bool) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	if gzipped {
		req.Header.Set("Content-Encoding", "gzip")
	}
	req.Header.Set("X-Moesif-Application-Id", s.cfg.ApplicationID)
	req.Header.Set("User-Agent", "apimeter-capture/1")
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return true, err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusRequestEntityTooLarge ||
		resp.StatusCode == http.StatusUnprocessableEntity || resp.StatusCode == http.StatusInternalServerError:
		// What the batch holds may be at fault: split it. Other 4xx
		// (a wrong application id, URL or method) refuse any batch, and
		// splitting would only multiply the requests.
		rf := &refusal{status: resp.StatusCode, index: -1, msg: string(bytes.TrimSpace(msg))}
		// apimeter's error body names the event: {"error":{"code","index"}}.
		var e struct {
			Error struct {
				Code  string `json:"code"`
				Index *int   `json:"index"`
			} `json:"error"`
		}
		if json.Unmarshal(msg, &e) == nil {
			rf.code = e.Error.Code
			if e.Error.Index != nil {
				rf.index = *e.Error.Index
			}
		}
		return false, rf
	}
	if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
		return false, fmt.Errorf("collector rejected the batch with %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return true, fmt.Errorf("collector answered %s: %s", resp.Status, bytes.TrimSpace(msg))
}

// BorrowsEvents marks HTTPSink as a BorrowingSink: Send encodes the events
// and keeps nothing of them.
func (s *HTTPSink) BorrowsEvents() {}

// Close releases idle connections.
func (s *HTTPSink) Close(context.Context) error {
	s.cfg.Client.CloseIdleConnections()
	return nil
}
