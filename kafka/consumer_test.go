package kafka_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/apimeter/apimeter/kafka"
)

func startConsumer(t testing.TB, c *kfake.Cluster, s *stack, group string, reg prometheus.Registerer, extra ...func(*kafka.ConsumerConfig)) (*kafka.Consumer, *running) {
	t.Helper()
	cfg := kafka.ConsumerConfig{
		Conn:        kafka.Conn{Brokers: c.ListenAddrs()},
		Topic:       topic,
		Group:       group,
		Format:      kafka.FormatAPIM,
		Org:         "acme",
		Env:         "prod",
		Ingester:    s.srv,
		PairTTL:     time.Second,
		Registerer:  reg,
		LogInterval: -1,
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		ClientOpts:  []kgo.Opt{kgo.SessionTimeout(6 * time.Second), kgo.HeartbeatInterval(200 * time.Millisecond), kgo.RebalanceTimeout(5 * time.Second)},
	}
	for _, f := range extra {
		f(&cfg)
	}
	cons, err := kafka.NewConsumer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- cons.Run(ctx) }()
	t.Cleanup(func() { r.stop() })
	return cons, r
}

// TestPipeline feeds a 2-partition topic as the APIM policy does — the
// vectors, generated calls with about 30% of responses ahead of their
// requests, requests and responses alone, three kinds of malformed message,
// lower-case authorization headers — and checks that the Metrics API counts
// exactly the calls, that no secret reached the store, that every offset
// was committed and that the health metrics say what happened.
func TestPipeline(t *testing.T) {
	c := newCluster(t)
	s := newStack(t)
	f := newFeeder(t, c)
	reg := prometheus.NewRegistry()
	cons, r := startConsumer(t, c, s, "pipeline", reg)

	now := time.Now()
	// The vectors: a pair, a truncated pair (response first), a request
	// alone, a response alone, two malformed messages.
	f.write(t, respRecord(vector(t, "02-post-truncated-response.txt"), now.Add(40*time.Millisecond)))
	f.write(t,
		reqRecord(vector(t, "01-get-request.txt"), now),
		respRecord(vector(t, "01-get-response.txt"), now.Add(10*time.Millisecond)),
		reqRecord(vector(t, "02-post-truncated-request.txt"), now),
		reqRecord(vector(t, "03-request-without-response.txt"), now),
		respRecord(vector(t, "04-response-without-request.txt"), now),
		reqRecord(vector(t, "05-malformed-no-prefix.txt"), now),
		reqRecord(vector(t, "06-malformed-bad-request-line.txt"), now),
		// The third kind: cut off before the end of its headers.
		respRecord([]byte("response:7e57c0de-0000-4000-8000-000000000001\nHTTP/1.1 200 OK\r\nContent-Type: app"), now),
	)
	want := map[string]int{"GET,200": 1, "POST,201": 1, "PUT,0": 1, ",503": 1}
	calls := genCalls(1, 1500, now)
	f.feed(t, calls)
	for k, v := range expected(calls) {
		want[k] += v
	}
	complete, alone := 2, 2
	respFirst := 0
	for _, c := range calls {
		switch {
		case c.noReq, c.noResp:
			alone++
		default:
			complete++
		}
		if c.respFirst {
			respFirst++
		}
	}
	t.Logf("%d calls: %d complete, %d alone, %d with the response written first", len(calls)+4, complete, alone, respFirst)

	waitFor(t, "every call stored", 60*time.Second, func() (bool, string) {
		st := cons.Stats()
		return st.Stored == int64(complete+alone) && st.Pending == 0, fmt.Sprintf("%+v", st)
	})
	st := cons.Stats()
	// A rebalance (a heartbeat missed on a loaded machine) rereads from
	// the committed offsets: the store then counts duplicates and the
	// consumer's own counters run ahead, but nothing is stored twice.
	redelivered := st.Duplicates > 0
	if redelivered {
		t.Logf("messages were delivered again (%d duplicates); checking the consumer's counters as lower bounds", st.Duplicates)
	}
	if exact := st.Paired == int64(complete) && st.OrphanRequests+st.OrphanResponses == int64(alone) && st.Malformed == 3; !exact &&
		(!redelivered || st.Paired < int64(complete) || st.OrphanRequests+st.OrphanResponses < int64(alone) || st.Malformed < 3) {
		t.Errorf("stats %+v: want %d paired, %d alone, 3 malformed", st, complete, alone)
	}
	if got := s.byVerbStatus(t); !maps.Equal(got, want) {
		t.Errorf("Metrics API by verb and status:\n got %v\nwant %v", got, want)
	}
	// No secret reached the store, whatever its header's case.
	var leaks int
	if err := s.st.DB().QueryRow(`SELECT count(*) FROM events WHERE detail ILIKE '%leaked-token%' OR detail ILIKE '%dropped-by-the-policy%' OR detail ILIKE '%"authorization"%'`).Scan(&leaks); err != nil {
		t.Fatal(err)
	}
	if leaks != 0 {
		t.Errorf("%d stored events hold an authorization header or its token", leaks)
	}
	// A truncated body is marked, the call's time is the request record's.
	var truncated int
	s.st.DB().QueryRow(`SELECT count(*) FROM events WHERE id = '0b7d5c2e-1f43-4a8e-b6a1-93c4d2e8f017' AND req_size = 2035 AND abs(latency_ms - 40) < 1`).Scan(&truncated)
	if truncated != 1 {
		t.Errorf("vector 02: want one event with req_size 2035 and latency 40 ms")
	}
	// Every offset is committed once the calls are stored.
	waitFor(t, "offsets committed", 10*time.Second, func() (bool, string) {
		st := cons.Stats()
		p0, p1 := st.Partitions[0], st.Partitions[1]
		return p0.Committed == p0.Next && p1.Committed == p1.Next && p0.Lag == 0 && p1.Lag == 0, fmt.Sprintf("%+v", st.Partitions)
	})
	// Prometheus sees the same figures.
	if got := testutil.ToFloat64(prometheusGauge(t, reg, "apimeter_kafka_paired_total")); got != float64(st.Paired) {
		t.Errorf("apimeter_kafka_paired_total = %v, want %d", got, st.Paired)
	}
	if redelivered {
		return
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(fmt.Sprintf(`
# HELP apimeter_kafka_malformed_total Records skipped as unreadable, per partition.
# TYPE apimeter_kafka_malformed_total counter
apimeter_kafka_malformed_total{partition="0",topic="%[1]s"} 2
apimeter_kafka_malformed_total{partition="1",topic="%[1]s"} 1
# HELP apimeter_kafka_pending Halves waiting for their other half.
# TYPE apimeter_kafka_pending gauge
apimeter_kafka_pending{topic="%[1]s"} 0
`, topic)), "apimeter_kafka_malformed_total", "apimeter_kafka_pending"); err != nil {
		t.Error(err)
	}
	if err := r.stop(); err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
}

// prometheusGauge gathers one unlabelled-but-topic metric as a collector
// testutil can read.
func prometheusGauge(t testing.TB, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) == 1 {
			g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name})
			if c := mf.Metric[0].GetCounter(); c != nil {
				g.Set(c.GetValue())
			} else {
				g.Set(mf.Metric[0].GetGauge().GetValue())
			}
			return g
		}
	}
	t.Fatalf("metric %s not found", name)
	return nil
}

// TestTwoConsumersOneGroup runs two consumers in one group while calls
// arrive, stops one mid-stream so that the other takes its partitions over,
// and checks that no call is lost or counted twice.
func TestTwoConsumersOneGroup(t *testing.T) {
	c := newCluster(t)
	s := newStack(t)
	f := newFeeder(t, c)
	a, ra := startConsumer(t, c, s, "shared", nil)
	b, rb := startConsumer(t, c, s, "shared", nil)

	now := time.Now()
	first := genCalls(2, 800, now)
	f.feed(t, first)
	// Both members joined: one holds the pair of partitions, the other
	// stands by (a member with partition 0 alone could pair nothing).
	waitFor(t, "the first calls paired", 30*time.Second, func() (bool, string) {
		sa, sb := a.Stats(), b.Stats()
		return sa.Paired+sb.Paired > 100, fmt.Sprintf("a %+v b %+v", sa.Partitions, sb.Partitions)
	})
	for _, st := range []kafka.Stats{a.Stats(), b.Stats()} {
		if len(st.Partitions) == 1 {
			t.Errorf("a member holds one partition of the pair: %+v", st.Partitions)
		}
	}
	// Stop the member holding the partitions mid-stream (it drains,
	// commits and leaves); the other takes over.
	if len(a.Stats().Partitions) == 0 {
		a, b, ra, rb = b, a, rb, ra
	}
	if err := ra.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	second := genCalls(3, 800, now.Add(time.Second))
	f.feed(t, second)
	all := append(first, second...)
	want := expected(all)
	total := 0
	for _, n := range want {
		total += n
	}
	waitFor(t, "every call stored once", 60*time.Second, func() (bool, string) {
		sa, sb := a.Stats(), b.Stats()
		return sa.Stored+sb.Stored == int64(total) && sb.Pending == 0 && len(sb.Partitions) == 2,
			fmt.Sprintf("a %+v\nb %+v", sa, sb)
	})
	if got := s.byVerbStatus(t); !maps.Equal(got, want) {
		t.Errorf("Metrics API by verb and status:\n got %v\nwant %v", got, want)
	}
	if a.Stats().Stored == 0 {
		t.Errorf("the first member stored nothing: the takeover was not exercised")
	}
	t.Logf("first member: %+v\nsecond member: %+v", a.Stats(), b.Stats())
	_ = rb
}

// lockedBuffer is a log destination several goroutines write.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestFormatMismatchSaysSo: records of the other format are skipped as
// malformed, and the log line says which --format reads them.
func TestFormatMismatchSaysSo(t *testing.T) {
	c := newCluster(t)
	s := newStack(t)
	f := newFeeder(t, c)
	jsonRecord := []byte(`{"request":{"time":"2026-12-01T10:00:00Z","uri":"https://api.example.com/a","verb":"GET"},"response":{"time":"2026-12-01T10:00:00.1Z","status":200}}`)
	f.write(t, reqRecord(jsonRecord, time.Now()), respRecord(vector(t, "01-get-response.txt"), time.Now()))
	for _, tc := range []struct {
		format kafka.Format
		want   string
		bad    int64
	}{{kafka.FormatAPIM, "read it with --format json", 1}, {kafka.FormatJSON, "read it with --format apim", 1}} {
		var logs lockedBuffer
		cons, r := startConsumer(t, c, s, "mismatch-"+string(tc.format), nil, func(cfg *kafka.ConsumerConfig) {
			cfg.Format = tc.format
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
		})
		waitFor(t, "the mismatched record skipped", 30*time.Second, func() (bool, string) {
			st := cons.Stats()
			return st.Malformed >= tc.bad, fmt.Sprintf("%+v", st)
		})
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(logs.String(), tc.want) {
			t.Errorf("format %s: log does not say %q:\n%s", tc.format, tc.want, logs.String())
		}
	}
}
