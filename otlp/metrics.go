package otlp

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// metrics are the OTLP receiver's Prometheus metrics. They are registered
// on Config.Registerer when one is given and counted either way. Stored and
// duplicate events are also counted by the collector's own
// apimeter_events_total, since they take its path.
type metrics struct {
	requests *prometheus.CounterVec // signal, code
	spans    *prometheus.CounterVec // kind, result
	logs     *prometheus.CounterVec // result
	json     *prometheus.CounterVec // signal, decoder
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apimeter_otlp_requests_total",
			Help: "OTLP/HTTP export requests by signal (traces, logs) and HTTP status code answered.",
		}, []string{"signal", "code"}),
		spans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apimeter_otlp_spans_total",
			Help: "Spans received over OTLP by kind and result: stored, duplicate (already stored), rejected (a SERVER span that is no usable HTTP call), ignored (client, internal, producer, consumer and unspecified spans are not API calls).",
		}, []string{"kind", "result"}),
		logs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apimeter_otlp_log_records_total",
			Help: "Log records received over OTLP by result: stored, duplicate, rejected (HTTP attributes but no usable call), ignored (no HTTP attributes: not an access log).",
		}, []string{"result"}),
		json: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apimeter_otlp_json_exports_total",
			Help: "OTLP/JSON export requests by signal and decoder: fast (apimeter's OTLP/JSON reader), or protojson (the protobuf JSON mapping's decoder, 4-5x the CPU, for what the fast reader leaves to it: ids in base64, malformed JSON, fields still in development).",
		}, []string{"signal", "decoder"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.spans, m.logs, m.json)
	}
	return m
}

func (m *metrics) request(signal string, code int) {
	m.requests.WithLabelValues(signal, strconv.Itoa(code)).Inc()
}

// jsonDecoded counts an OTLP/JSON export by the decoder that read it.
func (m *metrics) jsonDecoded(signal string, enc encoding, protojson bool) {
	if enc != encJSON {
		return
	}
	decoder := "fast"
	if protojson {
		decoder = "protojson"
	}
	m.json.WithLabelValues(signal, decoder).Inc()
}

// kindName is the label of a span kind.
func kindName(k int) string {
	switch tracepb.Span_SpanKind(k) {
	case tracepb.Span_SPAN_KIND_SERVER:
		return "server"
	case tracepb.Span_SPAN_KIND_CLIENT:
		return "client"
	case tracepb.Span_SPAN_KIND_INTERNAL:
		return "internal"
	case tracepb.Span_SPAN_KIND_PRODUCER:
		return "producer"
	case tracepb.Span_SPAN_KIND_CONSUMER:
		return "consumer"
	}
	return "unspecified"
}

// items counts what became of the spans or records of one export.
func (m *metrics) items(signal string, b *Batch, stored, dups int) {
	add := func(c prometheus.Counter, n int64) {
		if n > 0 {
			c.Add(float64(n))
		}
	}
	if signal == "traces" {
		add(m.spans.WithLabelValues("server", "stored"), int64(stored))
		add(m.spans.WithLabelValues("server", "duplicate"), int64(dups))
		add(m.spans.WithLabelValues("server", "rejected"), b.Rejected)
		for k, n := range b.Ignored {
			add(m.spans.WithLabelValues(kindName(k), "ignored"), n)
		}
		return
	}
	add(m.logs.WithLabelValues("stored"), int64(stored))
	add(m.logs.WithLabelValues("duplicate"), int64(dups))
	add(m.logs.WithLabelValues("rejected"), b.Rejected)
	add(m.logs.WithLabelValues("ignored"), b.Ignored[0])
}
