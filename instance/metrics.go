package instance

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/store/duckdb"
)

// Observability are the flags of /metrics and the store's memory.
type Observability struct {
	MetricsListen string `env:"APIMETER_METRICS_LISTEN" placeholder:"ADDR" help:"Serve /metrics on this address instead of the main listener (e.g. 127.0.0.1:9464); empty serves it on the main listener."`
	MemoryLimit   string `default:"512MB" env:"APIMETER_MEMORY_LIMIT" help:"Memory DuckDB may use for its buffers and queries (e.g. 512MB, 2GB); past it DuckDB spills to a temporary directory beside the database."`
	DedupeMemory  string `default:"128MB" env:"APIMETER_DEDUPE_MEMORY" help:"Memory the set of event ids remembered for idempotent ingest may hold (about 18 bytes per id); ids of the dedupe horizon past it are looked up in the events table."`
}

// newRegistry is the Prometheus registry of a server: Go runtime and
// process metrics, plus what the parts register.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// storeHealth is a store that reports its commits and queue (the embedded
// store; ClickHouse reports its own to its own monitoring).
type storeHealth interface {
	Health() duckdb.Health
	OnCommit(func(took time.Duration, rows int, err error))
}

// registerStore exports the store's health, when it reports it: the commit
// latency histogram, commits and failures, batches queued, ids in the
// dedupe set. A store that does not has no apimeter_store_* metrics.
func registerStore(reg prometheus.Registerer, st any) {
	if h, ok := st.(storeHealth); ok {
		registerHealth(reg, h)
	}
}

func registerHealth(reg prometheus.Registerer, st storeHealth) {
	commits := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "apimeter_store_commit_seconds",
		Help:    "Time from a group commit's first batch to its durable write, by result.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"result"})
	rows := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "apimeter_store_rows_committed_total",
		Help: "Event rows written by successful group commits.",
	})
	ok, failed := commits.WithLabelValues("ok"), commits.WithLabelValues("error")
	st.OnCommit(func(took time.Duration, n int, err error) {
		if err != nil {
			failed.Observe(took.Seconds())
			return
		}
		ok.Observe(took.Seconds())
		rows.Add(float64(n))
	})
	reg.MustRegister(commits, rows,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "apimeter_store_queued_batches",
			Help: "Batches waiting for the store's writer.",
		}, func() float64 { return float64(st.Health().Queued) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "apimeter_store_dedupe_entries",
			Help: "Event ids remembered for idempotent ingest (the dedupe set).",
		}, func() float64 { return float64(st.Health().DedupeEntries) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "apimeter_store_dedupe_bytes",
			Help: "Memory held by the dedupe set, at most --dedupe-memory.",
		}, func() float64 { return float64(st.Health().DedupeBytes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "apimeter_store_dedupe_lookups_total",
			Help: "Queries that looked event ids up in the events table because the dedupe set had no room for them.",
		}, func() float64 { return float64(st.Health().DedupeLookups) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "apimeter_store_last_commit_failed",
			Help: "1 when the store's last commit failed, 0 otherwise.",
		}, func() float64 {
			if st.Health().LastError != nil {
				return 1
			}
			return 0
		}),
	)
}

// readyChecks are what /readyz checks: the store and, when configured,
// Redis.
func readyChecks(st interface{ Ready(context.Context) error }, rc redis.UniversalClient) []server.ReadyCheck {
	checks := []server.ReadyCheck{{Name: "store", Check: st.Ready}}
	if rc != nil {
		checks = append(checks, server.ReadyCheck{Name: "redis", Check: func(ctx context.Context) error {
			return rc.Ping(ctx).Err()
		}})
	}
	return checks
}

// metricsHandler serves reg in Prometheus' text format.
func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// timedMux counts and times the routes registered through it: the Metrics
// API's calls by status code, and their latency.
type timedMux struct {
	mux   interface{ Handle(string, http.Handler) }
	hist  *prometheus.HistogramVec
	calls *prometheus.CounterVec
}

func newTimedMux(mux interface{ Handle(string, http.Handler) }, reg prometheus.Registerer, name, what string) *timedMux {
	t := &timedMux{
		mux: mux,
		hist: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    name + "_seconds",
			Help:    "Time to answer " + what + ", by status code.",
			Buckets: prometheus.DefBuckets,
		}, []string{"code"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name + "_requests_total",
			Help: what + " calls by status code.",
		}, []string{"code"}),
	}
	reg.MustRegister(t.hist, t.calls)
	return t
}

func (t *timedMux) Handle(pattern string, h http.Handler) {
	timed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &server.StatusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		code := strconv.Itoa(sw.Status())
		t.hist.WithLabelValues(code).Observe(time.Since(start).Seconds())
		t.calls.WithLabelValues(code).Inc()
	})
	// The key check writes its 401 and 403 in the handler's own shape
	// (Apigee's for the Metrics API) when the handler says how.
	if aw, ok := h.(server.AuthErrorWriter); ok {
		t.mux.Handle(pattern, authShaped{timed, aw})
		return
	}
	t.mux.Handle(pattern, timed)
}

type authShaped struct {
	http.Handler
	server.AuthErrorWriter
}
