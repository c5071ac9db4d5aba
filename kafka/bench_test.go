package kafka_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/httpmsg"
	"github.com/apimeter/apimeter/kafka"
	"github.com/apimeter/apimeter/store/duckdb"
)

var benchLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: benchLevel}))

var benchLevel = func() slog.Level {
	if os.Getenv("KBENCH_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}()

var benchCalls = flag.Int("kafka.calls", 100_000, "calls (two messages each) in BenchmarkPipeline's topic")

// BenchmarkPipeline measures, on one kfake topic filled as the APIM policy
// fills it, the messages per second of the whole pipeline (parse,
// pair, identify, scrub, store into a DuckDB file, commit) next to the raw
// rate of a consumer that only reads the same topic and the rate of a bare
// DuckDB appender writing the same calls' events (counted as two messages
// each), in alternating rounds (one of each per b.N). It reports the rates
// and the pipeline's ratio to each limit (medians).
//
//	go test ./kafka/ -run '^$' -bench Pipeline -benchtime 3x -kafka.calls 100000
func BenchmarkPipeline(b *testing.B) {
	c := newCluster(b)
	f := newFeeder(b, c)
	n := *benchCalls
	calls := genCalls(9, n, time.Now())
	for i := range calls {
		// Every call complete: the figure is for pairs. A third of the
		// responses are still written ahead of their requests.
		calls[i].noReq, calls[i].noResp = false, false
	}
	start := time.Now()
	f.feed(b, calls)
	msgs := 2 * n
	b.Logf("fed %d messages in %v", msgs, time.Since(start).Round(time.Millisecond))

	events := pairedEvents(b, calls)

	var raw, store, pipe, rawCPU, pipeCPU []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c0 := cpuTime()
		raw = append(raw, rawRound(b, c, fmt.Sprintf("raw-%d", i), msgs))
		c1 := cpuTime()
		pipe = append(pipe, pipelineRound(b, c, fmt.Sprintf("pipe-%d", i), n))
		c2 := cpuTime()
		store = append(store, rawStoreRound(b, events))
		rawCPU = append(rawCPU, (c1-c0).Seconds()*1e6/float64(msgs))
		pipeCPU = append(pipeCPU, (c2-c1).Seconds()*1e6/float64(msgs))
	}
	b.StopTimer()
	r, st, p := median(raw), median(store), median(pipe)
	b.ReportMetric(r, "raw-msg/s")
	b.ReportMetric(st, "raw-store-msg/s")
	b.ReportMetric(p, "pipeline-msg/s")
	b.ReportMetric(p/r, "ratio")
	// The pipeline against a bare appender writing its events alone, one
	// commit per poll: the store's own limit, far below the raw consume.
	b.ReportMetric(p/st, "ratio-to-raw-store")
	// CPU time of the whole process (broker included) per message: what
	// the rates would be on idle cores, whatever else the machine runs.
	b.ReportMetric(median(rawCPU), "raw-cpu-µs/msg")
	b.ReportMetric(median(pipeCPU), "pipeline-cpu-µs/msg")
	b.Logf("rounds raw %.0f, raw store %.0f, pipeline %.0f (messages/s); CPU µs per message raw %.1f, pipeline %.1f", raw, store, pipe, rawCPU, pipeCPU)
}

// pairedEvents are the events the pipeline stores for calls, made
// outside the timed rounds.
func pairedEvents(b *testing.B, calls []call) []apimeter.Event {
	events := make([]apimeter.Event, 0, len(calls))
	ts := time.Now()
	for i := range calls {
		req, err := httpmsg.Decode(calls[i].request())
		if err != nil {
			b.Fatal(err)
		}
		resp, err := httpmsg.Decode(calls[i].response())
		if err != nil {
			b.Fatal(err)
		}
		e := httpmsg.ToEvent(&req, &resp, ts, ts)
		e.Org, e.Env = "acme", "prod"
		events = append(events, e)
	}
	return events
}

// rawStoreRound writes events through a bare DuckDB appender into a new
// database, one commit per poll's calls (rawCommitRows), and
// gives the rate in messages (two per event).
func rawStoreRound(b *testing.B, events []apimeter.Event) float64 {
	raw, err := duckdb.OpenRaw(context.Background(), filepath.Join(b.TempDir(), "raw.duckdb"))
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	start := time.Now()
	for i := 0; i < len(events); i += rawCommitRows {
		if err := raw.Append(events[i:min(i+rawCommitRows, len(events))]); err != nil {
			b.Fatal(err)
		}
		if err := raw.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	return float64(2*len(events)) / time.Since(start).Seconds()
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rawRound reads the whole topic in a new group and does nothing else.
func rawRound(b *testing.B, c interface{ ListenAddrs() []string }, group string, msgs int) float64 {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	start := time.Now()
	got := 0
	for got < msgs {
		fs := cl.PollRecords(context.Background(), kafka.DefaultMaxPoll)
		fs.EachRecord(func(r *kgo.Record) { got++ })
	}
	return float64(msgs) / time.Since(start).Seconds()
}

// pipelineRound runs a Consumer into a fresh store until every call is
// stored.
func pipelineRound(b *testing.B, c interface{ ListenAddrs() []string }, group string, calls int) float64 {
	s := newStack(b)
	cfg := kafka.ConsumerConfig{Conn: kafka.Conn{Brokers: c.ListenAddrs()}, Topic: topic, Group: group, Org: "acme", Env: "prod",
		Ingester: s.srv, LogInterval: -1, Logger: benchLog}
	cons, err := kafka.NewConsumer(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- cons.Run(ctx) }()
	for cons.Stats().Stored < int64(calls) {
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if st := cons.Stats(); st.Paired != int64(calls) || st.Malformed != 0 {
		b.Fatalf("stats %+v: want %d paired", st, calls)
	}
	return float64(2*calls) / took.Seconds()
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// rawCommitRows is the bare appender's rows per commit: the calls of one
// poll of DefaultMaxPoll messages.
const rawCommitRows = kafka.DefaultMaxPoll / 2
