package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apimeter/apimeter/apps"
)

// metrics are the collector's Prometheus metrics. They are registered on
// Config.Registerer when one is given and counted either way.
type metrics struct {
	events   *prometheus.CounterVec // result: stored, duplicate
	batches  *prometheus.CounterVec // endpoint, code (HTTP status)
	rejected *prometheus.CounterVec // reason: the error code answered
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apimeter_events_total",
			Help: "Events received by the collector, by result: stored (newly written), duplicate (already stored, skipped) or truncated (cut to the per-event caps by an entry point that cannot refuse one call, and marked).",
		}, []string{"result"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apimeter_collector_requests_total",
			Help: "Collector requests (events, batches, profiles) by endpoint and HTTP status code answered.",
		}, []string{"endpoint", "code"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apimeter_collector_rejected_total",
			Help: "Collector requests answered with an error, by the error code of the answer (invalid_event, body_too_large, store_unavailable, ...).",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.batches, m.rejected)
	}
	return m
}

// StatusWriter remembers the status code a handler answered with, for
// metrics and logs.
type StatusWriter struct {
	http.ResponseWriter
	status int
}

// Status is the code answered: 200 when the handler wrote a body without
// a header, 0 when it wrote nothing.
func (w *StatusWriter) Status() int { return w.status }

// WriteHeader implements http.ResponseWriter.
func (w *StatusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (w *StatusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the writer underneath.
func (w *StatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// counted counts the answers of a collector endpoint by status code.
func (s *Server) counted(endpoint string, h http.HandlerFunc) http.HandlerFunc {
	// One counter per status code is looked up once and kept: the label
	// lookup would otherwise hash two strings on every request.
	var mu sync.Mutex
	byCode := map[int]prometheus.Counter{}
	return func(w http.ResponseWriter, r *http.Request) {
		sw := &StatusWriter{ResponseWriter: w}
		h(sw, r)
		code := sw.status
		if code == 0 {
			code = http.StatusOK
		}
		mu.Lock()
		c, ok := byCode[code]
		if !ok {
			c = s.metrics.batches.WithLabelValues(endpoint, strconv.Itoa(code))
			byCode[code] = c
		}
		mu.Unlock()
		c.Inc()
	}
}

// logLimiter lets one log line per key through per interval and counts the
// ones it held back, so that one sender repeating the same bad request
// cannot flood the log.
type logLimiter struct {
	every time.Duration
	mu    sync.Mutex
	seen  map[string]*limitEntry
}

type limitEntry struct {
	last       time.Time
	suppressed int
}

// maxLimitKeys bounds the limiter's memory; past it the table starts over.
const maxLimitKeys = 4096

func newLogLimiter(every time.Duration) *logLimiter {
	return &logLimiter{every: every, seen: map[string]*limitEntry{}}
}

// allow reports whether a line for key may be logged now and how many were
// held back since the last one.
func (l *logLimiter) allow(key string, now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.seen[key]
	if e == nil {
		if len(l.seen) >= maxLimitKeys {
			clear(l.seen)
		}
		l.seen[key] = &limitEntry{last: now}
		return true, 0
	}
	if now.Sub(e.last) < l.every {
		e.suppressed++
		return false, 0
	}
	n := e.suppressed
	e.last, e.suppressed = now, 0
	return true, n
}

// ReadyCheck is one thing /readyz checks: the store, Redis, a Kafka
// consumer, ClickHouse.
type ReadyCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// readyTimeout bounds each readiness check.
const readyTimeout = 2 * time.Second

// readyz answers 200 when every check passes, else 503 naming each failed
// check and why.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	checks := map[string]string{}
	var failed []string
	for _, c := range s.cfg.Ready {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		err := c.Check(ctx)
		cancel()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				err = errors.New("no answer within " + readyTimeout.String())
			}
			checks[c.Name] = err.Error()
			failed = append(failed, c.Name)
			continue
		}
		checks[c.Name] = "ok"
	}
	if len(failed) > 0 {
		ae := newError(http.StatusServiceUnavailable, "not_ready", "not ready: "+strings.Join(failed, ", ")+"; see checks")
		w.Header().Set("Retry-After", "5")
		WriteJSON(w, ae.Status, map[string]any{"status": "not ready", "error": ae, "checks": checks})
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": checks})
}

// logRejected logs a refused batch at warn level, naming the sender's app,
// org and env and why; at most one line per sender and reason every ten
// seconds, with the count of lines held back.
func (s *Server) logRejected(r *http.Request, a apps.App, err error) {
	code := errorCode(err)
	if ok, held := s.logLimit.allow("reject\x00"+a.ID+"\x00"+code, time.Now()); ok {
		s.log.Warn("batch rejected", "app", apps.ShortID(a.ID), "org", a.Org, "env", a.Env, "path", r.URL.Path,
			"reason", code, "err", err.Error(), "similar_lines_held_back", held)
	}
}
