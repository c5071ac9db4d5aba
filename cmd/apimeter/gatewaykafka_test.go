package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/instance"
	"github.com/apimeter/apimeter/internal/bench"
	"github.com/apimeter/apimeter/moesif"
)

// verbAPI answers GET 200, POST 201 and DELETE 404, like a small REST API.
func verbAPI(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/accounts/{id}", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		switch r.Method {
		case http.MethodPost:
			w.WriteHeader(http.StatusCreated)
		case http.MethodDelete:
			w.WriteHeader(http.StatusNotFound)
		}
		fmt.Fprintf(w, `{"account":%q}`, r.PathValue("id"))
	})
	s, err := bench.ServeAt("127.0.0.1:0", mux)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s.URL
}

// runGatewayCmd runs `apimeter gateway` with c until the returned func
// stops it (as SIGTERM does) and returns Run's error. It waits until the
// gateway accepts connections.
func runGatewayCmd(t *testing.T, c *gatewayCmd) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	for deadline := time.Now().Add(20 * time.Second); ; {
		if conn, err := net.Dial("tcp", c.Listen); err == nil {
			conn.Close()
			break
		}
		select {
		case err := <-done:
			t.Fatalf("apimeter gateway stopped at start: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("apimeter gateway not listening within 20 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(40 * time.Second):
			t.Fatal("apimeter gateway did not stop within 40 s")
			return nil
		}
	}
	t.Cleanup(func() { stop() })
	return stop
}

// gatewayMetric reads one of the gateway's counters from its /metrics.
func gatewayMetric(t *testing.T, addr, name string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return int64(n)
		}
	}
	t.Fatalf("/metrics has no %s:\n%s", name, b)
	return 0
}

// TestGatewayToKafka runs `apimeter gateway --kafka-brokers ...` in front
// of a real upstream, writing to a 2-partition kfake topic in each format,
// and the consumer of `apimeter serve --kafka-*` reading the topic into a
// store: the Metrics API counts exactly the calls made, by verb and
// status; a lower-case authorization header reaches neither the topic nor
// the store; each call is stored under the id its caller was given.
func TestGatewayToKafka(t *testing.T) {
	for _, format := range []string{"json", "apim"} {
		t.Run(format, func(t *testing.T) {
			const topic = "calls"
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic))
			if err != nil {
				t.Fatal(err)
			}
			defer cluster.Close()
			gw := &gatewayCmd{Upstream: verbAPI(t), APIName: "accounts", Route: []string{"/accounts/{id}"},
				Listen: freeAddr(t), MetricsListen: freeAddr(t), LogLevel: 8, RedisPrefix: "apimeter:",
				Kafka: instance.KafkaOut{KafkaConn: instance.KafkaConn{Brokers: cluster.ListenAddrs()}, Topic: topic, Format: format,
					DeliveryTimeout: 30 * time.Second}}
			if err := gw.Validate(); err != nil {
				t.Fatal(err)
			}
			stop := runGatewayCmd(t, gw)

			const calls = 45
			want := map[string]int{}
			ids := map[string]bool{}
			for i := range calls {
				method, status := []string{"GET", "POST", "DELETE"}[i%3], []int{200, 201, 404}[i%3]
				req, _ := http.NewRequest(method, fmt.Sprintf("http://%s/accounts/%d", gw.Listen, i), strings.NewReader(`{"a":1}`))
				// As an HTTP/2 client sends it; Azure API Management's policy would let it through.
				req.Header["authorization"] = []string{"Bearer " + bench.Token}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != status {
					t.Fatalf("%s through the gateway: %d, want %d", method, resp.StatusCode, status)
				}
				ids[resp.Header.Get(moesif.TransactionIDHeader)] = true
				want[fmt.Sprintf("%s,%d", method, status)]++
			}
			if sent := gatewayMetric(t, gw.MetricsListen, "apimeter_gateway_events_enqueued_total"); sent != calls {
				t.Errorf("enqueued %d events, want %d", sent, calls)
			}
			if err := stop(); err != nil {
				t.Fatalf("apimeter gateway: %v", err)
			}

			// The topic: the token in no record; apim writes requests on 0
			// and responses on 1, keyed by the caller's id.
			records := readTopic(t, cluster, topic, map[string]int{"json": calls, "apim": 2 * calls}[format])
			parts := map[int32]int{}
			for _, r := range records {
				parts[r.Partition]++
				if bytes.Contains(r.Value, []byte(bench.Token)) {
					t.Errorf("record on partition %d holds the bearer token:\n%s", r.Partition, r.Value)
				}
				if !ids[string(r.Key)] {
					t.Errorf("record keyed %q, not an id a caller was given", r.Key)
				}
				if format == "apim" {
					first, _, _ := bytes.Cut(r.Value, []byte("\n"))
					if want := []string{"request:", "response:"}[r.Partition] + string(r.Key); string(first) != want {
						t.Errorf("partition %d: record starts %q, want %q", r.Partition, first, want)
					}
					if bytes.Contains(bytes.ToLower(r.Value), []byte("authorization:")) {
						t.Errorf("apim record holds an authorization header:\n%s", r.Value)
					}
				}
			}
			if format == "apim" && (parts[0] != calls || parts[1] != calls) {
				t.Errorf("records per partition %v, want %d requests on 0 and %d responses on 1", parts, calls, calls)
			}

			// The consumer of `apimeter serve --kafka-*` into a store.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			f := testServerFlags(t)
			in, err := instance.Start(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			consumed, err := instance.StartConsumer(ctx, in, instance.ConsumerConfig{KafkaConn: instance.KafkaConn{Brokers: cluster.ListenAddrs()},
				Topic: topic, Group: "apimeter", Format: format, Org: "acme", Env: "prod", PairTTL: 2 * time.Minute, MaxPending: 1000,
				SessionTimeout: 6 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			var events []apimeter.Event
			for deadline := time.Now().Add(60 * time.Second); len(events) < calls; time.Sleep(50 * time.Millisecond) {
				if events, err = in.Store.Events(ctx, apimeter.EventFilter{Org: "acme", Env: "prod", Limit: 1000}); err != nil {
					t.Fatal(err)
				}
				if time.Now().After(deadline) {
					t.Fatalf("stored %d of %d calls within 60 s", len(events), calls)
				}
			}
			cancel()
			if err := <-consumed; err != nil {
				t.Errorf("consumer: %v", err)
			}
			if got := metricsByVerbStatus(t, in.URL, f.Data); !maps.Equal(got, want) {
				t.Errorf("Metrics API by verb and status:\n got %v\nwant %v", got, want)
			}
			for _, e := range events {
				if !ids[e.ID] {
					t.Errorf("stored event %s, not an id a caller was given", e.ID)
				}
				if format == "json" && (e.UserID != "513" || e.APIName != "accounts" || e.Route != "/accounts/{id}" || e.TargetLatencyMs <= 0) {
					t.Errorf("json: stored user %q api %q route %q target %.3f ms; want what the gateway knew: 513, accounts, /accounts/{id}, > 0",
						e.UserID, e.APIName, e.Route, e.TargetLatencyMs)
				}
			}
			all, _ := json.Marshal(events)
			if bytes.Contains(all, []byte(bench.Token)) {
				t.Error("the bearer token was stored")
			}
		})
	}
}

// readTopic reads n records of topic from the start.
func readTopic(t *testing.T, c *kfake.Cluster, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records of %s", len(out), n, topic)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

// TestGatewayKafkaDown runs `apimeter gateway` with its Kafka output
// pointed at an address where no broker listens: every API call is still
// answered by the upstream, the events that cannot be queued are dropped
// and counted, none counts as sent, and the gateway stops cleanly.
func TestGatewayKafkaDown(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "gateway.yaml")
	os.WriteFile(conf, []byte(fmt.Sprintf("queue_size: 4\nupstreams:\n  - name: accounts\n    url: %s\n", verbAPI(t))), 0o600)
	gw := &gatewayCmd{Config: conf, Listen: freeAddr(t), MetricsListen: freeAddr(t), LogLevel: 8, RedisPrefix: "apimeter:",
		Kafka: instance.KafkaOut{KafkaConn: instance.KafkaConn{Brokers: []string{freeAddr(t)}}, Topic: "calls", Format: "apim",
			DeliveryTimeout: 2 * time.Second}}
	stop := runGatewayCmd(t, gw)
	calls := 0
	// Until the queue is full and events are dropped: at most a few
	// seconds (the sender is stuck waiting on the brokers), bounded here.
	for deadline := time.Now().Add(30 * time.Second); gatewayMetric(t, gw.MetricsListen, "apimeter_gateway_events_dropped_total") == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no event dropped after %d calls in 30 s with a queue of 4 and no broker", calls)
		}
		for range 10 {
			resp, err := http.Get(fmt.Sprintf("http://%s/accounts/%d", gw.Listen, calls))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			calls++
			if resp.StatusCode != 200 {
				t.Fatalf("call %d with Kafka down: %d, want the upstream's 200", calls, resp.StatusCode)
			}
		}
	}
	// Every call was either queued or dropped; none was sent.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		enq := gatewayMetric(t, gw.MetricsListen, "apimeter_gateway_events_enqueued_total")
		drop := gatewayMetric(t, gw.MetricsListen, "apimeter_gateway_events_dropped_total")
		if enq+drop == int64(calls) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d calls, %d enqueued and %d dropped", calls, enq, drop)
		}
	}
	if sent := gatewayMetric(t, gw.MetricsListen, "apimeter_gateway_events_sent_total"); sent != 0 {
		t.Errorf("%d events counted as sent with no broker", sent)
	}
	if err := stop(); err != nil {
		t.Fatalf("apimeter gateway with Kafka down: %v", err)
	}
}
