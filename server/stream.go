package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/moesif"
)

// Defaults for StreamConfig.
const (
	DefaultStreamBuffer       = 256
	DefaultStreamSubscribers  = 64
	DefaultStreamHeartbeat    = 15 * time.Second
	DefaultStreamWriteTimeout = 30 * time.Second
)

// StreamConfig bounds the live event stream.
type StreamConfig struct {
	// Buffer is how many events wait for one subscriber before newer ones
	// are dropped for it. Zero means DefaultStreamBuffer.
	Buffer int
	// MaxSubscribers caps the open streams; one more is a 503. Zero means
	// DefaultStreamSubscribers.
	MaxSubscribers int
	// Heartbeat is how often an idle stream gets a comment line, so
	// proxies and browsers keep it open. Zero means DefaultStreamHeartbeat.
	Heartbeat time.Duration
	// WriteTimeout bounds each write to a stream, in place of the
	// server's WriteTimeout (which would cut every stream after it): a
	// client that takes no bytes for that long is cut off. Zero means
	// DefaultStreamWriteTimeout.
	WriteTimeout time.Duration
}

// Stream fans newly stored events out to live subscribers (the server-sent
// events of GET .../events/stream). It is a Sink: Stored never waits on a
// subscriber. Each subscriber has a bounded buffer; when a slow reader lets
// it fill, newer events are dropped for that reader alone and it is told
// how many, so a slow browser never slows ingest.
type Stream struct {
	cfg    StreamConfig
	mu     sync.RWMutex
	subs   map[*subscriber]struct{}
	closed bool
}

// StreamFilter selects the events a subscriber gets. Empty fields match
// everything.
type StreamFilter struct {
	Org, Env  string
	UserID    string
	CompanyID string
	APIName   string
	Route     string
	Status    int  // exact status, 0 for any
	Errors    bool // only failed calls (status >= 400 or no response)
}

// Match reports whether e passes the filter.
func (f *StreamFilter) Match(e *apimeter.Event) bool {
	return e.Org == f.Org && e.Env == f.Env &&
		(f.UserID == "" || e.UserID == f.UserID) &&
		(f.CompanyID == "" || e.CompanyID == f.CompanyID) &&
		(f.APIName == "" || e.APIName == f.APIName) &&
		(f.Route == "" || e.Route == f.Route) &&
		(f.Status == 0 || e.Status == f.Status) &&
		(!f.Errors || e.IsError())
}

type subscriber struct {
	f       StreamFilter
	ch      chan []byte
	dropped atomic.Int64
	done    chan struct{} // closed when the stream shuts down
}

// NewStream returns a Stream with no subscribers.
func NewStream(cfg StreamConfig) *Stream {
	if cfg.Buffer <= 0 {
		cfg.Buffer = DefaultStreamBuffer
	}
	if cfg.MaxSubscribers <= 0 {
		cfg.MaxSubscribers = DefaultStreamSubscribers
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultStreamHeartbeat
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultStreamWriteTimeout
	}
	return &Stream{cfg: cfg, subs: map[*subscriber]struct{}{}}
}

// Stored implements apimeter.Sink. Each event is encoded once, and only
// when a subscriber with room wants it, so the encoding work is bounded by
// the rate the readers actually read; a full buffer costs a counter
// increment.
func (s *Stream) Stored(_ context.Context, events []*apimeter.Event) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.subs) == 0 {
		return nil
	}
	for _, e := range events {
		var msg []byte
		for sub := range s.subs {
			if !sub.f.Match(e) {
				continue
			}
			if len(sub.ch) == cap(sub.ch) {
				// Full: drop before paying for the encoding, so a stalled
				// reader costs ingest a counter increment per event.
				sub.dropped.Add(1)
				continue
			}
			if msg == nil {
				b, err := json.Marshal(moesif.FromEvent(e))
				if err != nil {
					return fmt.Errorf("stream: encode event %s: %w", e.ID, err)
				}
				msg = b
			}
			select {
			case sub.ch <- msg:
			default:
				sub.dropped.Add(1)
			}
		}
	}
	return nil
}

// Subscribers returns how many streams are open.
func (s *Stream) Subscribers() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.subs)
}

// errTooManyStreams is the answer past MaxSubscribers.
var errTooManyStreams = &APIError{Status: http.StatusServiceUnavailable, Code: "too_many_streams",
	Message: "too many open event streams; retry later"}

func (s *Stream) subscribe(f StreamFilter) (*subscriber, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.subs) >= s.cfg.MaxSubscribers {
		return nil, errTooManyStreams
	}
	sub := &subscriber{f: f, ch: make(chan []byte, s.cfg.Buffer), done: make(chan struct{})}
	s.subs[sub] = struct{}{}
	return sub, nil
}

func (s *Stream) unsubscribe(sub *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.subs, sub)
}

// Close ends every open stream and refuses new ones, so that a server's
// graceful shutdown does not wait on browsers that never hang up.
func (s *Stream) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	for sub := range s.subs {
		close(sub.done)
	}
}

// streamFilter reads the query parameters of a stream request.
func streamFilter(r *http.Request) (StreamFilter, error) {
	q := r.URL.Query()
	f := StreamFilter{Org: r.PathValue("org"), Env: r.PathValue("env"),
		UserID: q.Get("user_id"), CompanyID: q.Get("company_id"), APIName: q.Get("api_name"), Route: q.Get("route")}
	if v := q.Get("status"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 || n > 999 {
			return f, &APIError{Status: http.StatusBadRequest, Code: "invalid_parameter", Field: "status", Message: "status: must be an HTTP status code"}
		}
		f.Status = n
	}
	if v := q.Get("errors"); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return f, &APIError{Status: http.StatusBadRequest, Code: "invalid_parameter", Field: "errors", Message: "errors: must be true or false"}
		}
		f.Errors = on
	}
	return f, nil
}

// ServeHTTP streams matching events as server-sent events until the client
// goes away or the stream is closed. Each call is an `event: call` whose
// data is the event as GET .../events answers it; `event: dropped` with
// {"dropped": N} says N events were left out because the client read too
// slowly.
func (s *Stream) serve(w http.ResponseWriter, r *http.Request, writeErr func(http.ResponseWriter, *http.Request, error)) {
	f, err := streamFilter(r)
	if err != nil {
		writeErr(w, r, err)
		return
	}
	sub, err := s.subscribe(f)
	if err != nil {
		writeErr(w, r, err)
		return
	}
	defer s.unsubscribe(sub)
	rc := http.NewResponseController(w)
	// A stream outlives the server's read and write timeouts by design: the
	// request has no body to read, and each write gets its own deadline.
	rc.SetReadDeadline(time.Time{})
	deadline := func() { rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout)) }
	deadline()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// retry: how long a browser's EventSource waits before reconnecting.
	if _, err := fmt.Fprint(w, "retry: 2000\n: connected\n\n"); err != nil {
		return
	}
	if rc.Flush() != nil {
		return
	}
	tick := time.NewTicker(s.cfg.Heartbeat)
	defer tick.Stop()
	var buf []byte
	for {
		buf = buf[:0]
		select {
		case <-r.Context().Done():
			return
		case <-sub.done:
			return
		case <-tick.C:
			buf = append(buf, ": keep-alive\n\n"...)
		case msg := <-sub.ch:
			buf = appendSSE(buf, "call", msg)
			// Send what else is waiting in one write.
			for more := true; more && len(buf) < 256<<10; {
				select {
				case m := <-sub.ch:
					buf = appendSSE(buf, "call", m)
				default:
					more = false
				}
			}
		}
		if n := sub.dropped.Swap(0); n > 0 {
			buf = appendSSE(buf, "dropped", []byte(`{"dropped":`+strconv.FormatInt(n, 10)+`}`))
		}
		deadline()
		if _, err := w.Write(buf); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
	}
}

func appendSSE(dst []byte, event string, data []byte) []byte {
	dst = append(dst, "event: "...)
	dst = append(dst, event...)
	dst = append(dst, "\ndata: "...)
	dst = append(dst, data...) // JSON from encoding/json holds no newline
	return append(dst, "\n\n"...)
}
