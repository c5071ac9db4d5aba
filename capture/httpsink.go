package capture

import (
	"bytes"
	"context"
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
	DefaultMaxRetries     = 3
	DefaultBackoff        = 200 * time.Millisecond
	DefaultMaxBackoff     = 5 * time.Second
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
	// MaxRetries bounds the retries of a batch after a network error, a 5xx
	// or a 429. Zero means DefaultMaxRetries; negative means none.
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
	Logger         *slog.Logger
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
}

// NewHTTPSink returns an HTTPSink for cfg.
func NewHTTPSink(cfg HTTPSinkConfig) (*HTTPSink, error) {
	if cfg.URL == "" || cfg.ApplicationID == "" {
		return nil, errors.New("capture: HTTPSinkConfig needs URL and ApplicationID")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = DefaultMaxRetries
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
	s := &HTTPSink{cfg: cfg, url: strings.TrimRight(cfg.URL, "/") + "/v1/events/batch"}
	s.stream = s.newStream()
	return s, nil
}

// batchStream is one batch on its way to the collector: its JSON, handed
// to the compressor a chunk at a time rather than as one buffer of the
// whole batch (1.3 MB for 500 events with 1 KiB bodies), so that the chunk
// stays in cache and the process's other goroutines keep theirs. A stream
// is reused for batch after batch by one goroutine.
type batchStream struct {
	json []byte       // the JSON not yet compressed; all of it without gzip
	buf  bytes.Buffer // the compressed batch
	gz   *gzip.Writer // nil without compression
	n    int          // events in the batch
}

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
		if b.gz != nil {
			b.buf.Reset()
			b.gz.Reset(&b.buf)
		}
	} else {
		b.json = append(b.json, ',')
	}
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
	b.json = b.json[:0]
	return nil
}

// finish ends the batch and returns its body, valid until the stream is
// used again.
func (b *batchStream) finish() ([]byte, error) {
	b.n = 0
	b.json = append(b.json, ']')
	if b.gz == nil {
		return b.json, nil
	}
	if err := b.compress(); err != nil {
		return nil, err
	}
	if err := b.gz.Close(); err != nil {
		return nil, fmt.Errorf("gzip batch: %w", err)
	}
	return b.buf.Bytes(), nil
}

// gzipChunk is how much encoded JSON is handed to the compressor at once.
const gzipChunk = 32 << 10

// Send posts events as one batch, retrying as configured.
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
	body, err := b.finish()
	if err != nil {
		return err
	}
	return s.postRetrying(ctx, body, len(events))
}

// postRetrying posts body, retrying as configured.
func (s *HTTPSink) postRetrying(ctx context.Context, body []byte, n int) error {
	backoff := s.cfg.Backoff
	for attempt := 0; ; attempt++ {
		retry, err := s.post(ctx, body, !s.cfg.NoCompression)
		if err == nil {
			return nil
		}
		if !retry || attempt >= s.cfg.MaxRetries || ctx.Err() != nil {
			return fmt.Errorf("post %d events (attempt %d): %w", n, attempt+1, err)
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
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return true, fmt.Errorf("collector answered %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return false, fmt.Errorf("collector rejected the batch with %s: %s", resp.Status, bytes.TrimSpace(msg))
}

// BorrowsEvents marks HTTPSink as a BorrowingSink: Send encodes the events
// and keeps nothing of them.
func (s *HTTPSink) BorrowsEvents() {}

// Close releases idle connections.
func (s *HTTPSink) Close(context.Context) error {
	s.cfg.Client.CloseIdleConnections()
	return nil
}
