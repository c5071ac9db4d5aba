package capture_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/capture"
	"github.com/apimeter/apimeter/kafka"
)

// The benchmarks compare one handler, bare and wrapped, on 1 KiB request and
// response bodies with body capture on:
//
//	go test -run XXX -bench Middleware -benchmem ./capture/
//
// "wrapped-handler-path" keeps the queue full so every event is dropped at
// the enqueue: it measures exactly what the request goroutine pays.
// "wrapped-with-sender" lets the sending goroutine build and scrub every
// event as well (its CPU and allocations are counted too, since Go counts
// allocations process-wide); "dropped/op" says how many could not be queued.

var kib = bytes.Repeat([]byte("x"), 1024)

// reqBody is a reusable request body with only Read and Close, like
// net/http's own (a bytes.Reader's WriteTo would flatter the bare handler).
type reqBody struct{ r bytes.Reader }

func (b *reqBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (*reqBody) Close() error                 { return nil }

// discardWriter is a reusable ResponseWriter with the optional interfaces
// of net/http's own.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Flush()                      {}
func (w *discardWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, http.ErrNotSupported
}
func (w *discardWriter) ReadFrom(r io.Reader) (int64, error) { return io.Copy(io.Discard, r) }

func benchHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /accounts/{id}/message", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(kib)
	})
	return mux
}

func runRequests(b *testing.B, h http.Handler) { runPaced(b, h, nil) }

// runPaced is runRequests calling wait, when set, every 256 calls.
func runPaced(b *testing.B, h http.Handler, wait func()) {
	body := &reqBody{}
	req, _ := http.NewRequest("POST", "http://api.example.com/accounts/42/message?x=1", nil)
	req.RequestURI = "/accounts/42/message?x=1"
	req.RemoteAddr = "127.0.0.1:5555"
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "bench/1")
	req.Header.Set("Authorization", "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI1MTMiLCJuYW1lIjoiSm9obiBEb2UiLCJpYXQiOjE1MTYyMzkwMjJ9.FPN2Bj5b6OUzeTJ7lrNQPWUkZnnBnhMFYeyMjJ_-tN0")
	req.ContentLength = int64(len(kib))
	w := &discardWriter{h: http.Header{}}
	b.SetBytes(2 * int64(len(kib)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if wait != nil && i%256 == 0 {
			wait()
		}
		body.r.Reset(kib)
		req.Body = body
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}

// blockedSink never returns until Close, so the queue stays full.
type blockedSink struct{ stop chan struct{} }

func (s blockedSink) Send(ctx context.Context, _ []apimeter.Event) error {
	select {
	case <-s.stop:
	case <-ctx.Done():
	}
	return nil
}
func (s blockedSink) Close(context.Context) error { return nil }

// countSink discards events, counting them.
type countSink struct{ n atomic.Int64 }

func (s *countSink) Send(_ context.Context, evs []apimeter.Event) error {
	s.n.Add(int64(len(evs)))
	return nil
}
func (s *countSink) Close(context.Context) error { return nil }

// BenchmarkMiddleware compares the same handler bare and wrapped. ns/op of
// wrapped-handler-path is what the request goroutine pays. cpu-ns/op is the
// process's CPU time per call, the sending goroutine's included: for
// wrapped-http-sink, minus bare, it is the whole cost of capturing a call
// (building, encoding, gzip and the POST to a loopback endpoint that
// discards) on an idle machine; for wrapped-kafka-json and -apim, the same
// through the kafka package's Sink (encoding, franz-go's batching and
// snappy, and the produce request to an in-process broker that discards).
func BenchmarkMiddleware(b *testing.B) {
	// bare's and the HTTP sink's CPU per call in this run: the Kafka sinks
	// report their capture cost (cpu-ns/op minus bare) as a ratio to the
	// HTTP sink's, x-http-sink.
	var bareCPU, httpCPU float64
	b.Run("bare", func(b *testing.B) {
		cpu0 := processCPU()
		runRequests(b, benchHandler())
		bareCPU = float64((processCPU() - cpu0).Nanoseconds()) / float64(b.N)
		b.ReportMetric(bareCPU, "cpu-ns/op")
	})
	b.Run("wrapped-handler-path", func(b *testing.B) {
		sink := blockedSink{stop: make(chan struct{})}
		c, err := capture.New(capture.Options{Sink: sink, LogBody: true, QueueSize: 1, BatchSize: 1})
		if err != nil {
			b.Fatal(err)
		}
		h := c.Middleware(benchHandler())
		// Fill the queue (one event held by the blocked sender, one queued).
		for range 3 {
			runOnce(h)
		}
		runRequests(b, h)
		close(sink.stop)
		c.Close(context.Background())
	})
	b.Run("wrapped-with-sender", func(b *testing.B) {
		sink := &countSink{}
		c, err := capture.New(capture.Options{Sink: sink, LogBody: true})
		if err != nil {
			b.Fatal(err)
		}
		runRequests(b, c.Middleware(benchHandler()))
		c.Close(context.Background())
		st := c.Stats()
		b.ReportMetric(float64(st.Dropped)/float64(b.N), "dropped/op")
	})
	b.Run("wrapped-http-sink", func(b *testing.B) {
		sink, err := capture.NewHTTPSink(capture.HTTPSinkConfig{URL: newDiscardServer(b), ApplicationID: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		httpCPU = runWithSink(b, sink)
	})
	for _, format := range []kafka.Format{kafka.FormatJSON, kafka.FormatAPIM} {
		b.Run("wrapped-kafka-"+string(format), func(b *testing.B) {
			prod, err := kafka.NewProducer(kafka.ProducerConfig{Conn: kafka.Conn{Brokers: newDiscardBroker(b)}, Topic: "calls", Format: format})
			if err != nil {
				b.Fatal(err)
			}
			defer prod.Close(context.Background())
			cpu := runWithSink(b, prod.Sink())
			if httpCPU > bareCPU && bareCPU > 0 {
				b.ReportMetric((cpu-bareCPU)/(httpCPU-bareCPU), "x-http-sink")
			}
		})
	}
}

// runWithSink runs calls through a capture sending to sink, every call
// captured, and reports (and returns) the process's CPU per call.
func runWithSink(b *testing.B, sink capture.Sink) float64 {
	c, err := capture.New(capture.Options{Sink: sink, LogBody: true})
	if err != nil {
		b.Fatal(err)
	}
	// One goroutine calling the handler in a loop outruns the sender;
	// waiting (off CPU) while half the queue is full keeps every call
	// captured, so that cpu-ns/op is the whole cost.
	wait := func() {
		for c.Stats().Queued > capture.DefaultQueueSize/2 {
			time.Sleep(100 * time.Microsecond)
		}
	}
	cpu0 := processCPU()
	runPaced(b, c.Middleware(benchHandler()), wait)
	if err := c.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	cpu := float64((processCPU() - cpu0).Nanoseconds()) / float64(b.N)
	b.ReportMetric(cpu, "cpu-ns/op")
	st := c.Stats()
	if st.Sent+st.Dropped != int64(b.N) || st.Failed != 0 {
		b.Fatalf("sent %d and dropped %d of %d calls", st.Sent, st.Dropped, b.N)
	}
	b.ReportMetric(float64(st.Dropped)/float64(b.N), "dropped/op")
	return cpu
}

// newDiscardBroker starts an in-process Kafka (kfake) that answers every
// produce request with success and keeps nothing, as newDiscardServer's
// collector does: the benchmark's memory does not grow with b.N.
func newDiscardBroker(b *testing.B) []string {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "calls"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	var offset int64
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, t := range req.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic, rt.TopicID = t.Topic, t.TopicID
			for _, p := range t.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition, rp.BaseOffset = p.Partition, offset
				offset += 1 << 20 // past any batch's records
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
	return c.ListenAddrs()
}

func runOnce(h http.Handler) {
	req, _ := http.NewRequest("POST", "http://api.example.com/accounts/42/message", bytes.NewReader(kib))
	h.ServeHTTP(&discardWriter{h: http.Header{}}, req)
}

// BenchmarkHTTPSink measures the sending side per event: building the
// Moesif JSON, gzip and a POST to a loopback collector that discards, for
// batches of several sizes. ns/event is wall time; cpu-ns/event is the
// process's CPU time (both sides of the loopback POST included).
func BenchmarkHTTPSink(b *testing.B) {
	for _, n := range []int{100, 500, 1000} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			// Build realistic events through the middleware once.
			mem := &memSink{}
			c, _ := capture.New(capture.Options{Sink: mem, LogBody: true})
			h := c.Middleware(benchHandler())
			for range n {
				runOnce(h)
			}
			c.Close(context.Background())
			events := mem.all()
			srv := newDiscardServer(b)
			sink, _ := capture.NewHTTPSink(capture.HTTPSinkConfig{URL: srv, ApplicationID: "bench"})
			b.ReportAllocs()
			cpu0 := processCPU()
			b.ResetTimer()
			for b.Loop() {
				if err := sink.Send(context.Background(), events); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N*len(events)), "cpu-ns/event")
		})
	}
}

// processCPU is the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
