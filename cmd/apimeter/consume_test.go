package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/httpmsg"
	"github.com/apimeter/apimeter/instance"
	"github.com/apimeter/apimeter/stats"
)

// TestConsumeKilledAndRestarted runs `apimeter consume --collector` as a
// child process while calls arrive on a 2-partition kfake topic, kills it
// with SIGKILL mid-stream, starts it again, stops it with SIGTERM (exit 0)
// and checks through the collector's Metrics API that every call was
// stored once: none lost, none counted twice.
func TestConsumeKilledAndRestarted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts consumer processes; skipped with -short")
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "apim"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := strings.Join(cluster.ListenAddrs(), ",")

	dir := t.TempDir()
	f := instance.Config{Listen: "127.0.0.1:0", Data: filepath.Join(dir, "data"), BodyCap: 1024, MaxBodyBytes: 1 << 24,
		MaxBatchEvents: 20000, DedupeHorizon: time.Hour, StatsConfig: instance.StatsConfig{StatsQuota: -1}}
	in, err := instance.Start(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	app, err := apps.Create(f.Data, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	stored := func() int {
		var n int
		in.Store.DB().QueryRow("SELECT count(*) FROM events").Scan(&n)
		return n
	}

	producer, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("apim"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	calls := policyCalls(8000)
	want := map[string]int{}
	for _, c := range calls {
		want[c.key]++
	}
	fed := make(chan error, 1)
	go func() {
		// Calls keep arriving while the consumer runs, dies and restarts.
		for i := 0; i < len(calls); i += 400 {
			var rs []*kgo.Record
			now := time.Now()
			for _, c := range calls[i:min(i+400, len(calls))] {
				// Stamped when written, as Event Hubs stamps the enqueue
				// time: the pair TTL runs on these.
				for _, r := range c.records {
					r.Timestamp = now
					if r.Partition == 1 {
						r.Timestamp = now.Add(5 * time.Millisecond)
					}
				}
				rs = append(rs, c.records...)
			}
			if err := producer.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
				fed <- err
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		fed <- nil
	}()

	consume := func(extra ...string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], append([]string{"consume", "--brokers", brokers, "--topic", "apim", "--group", "g1",
			"--collector", in.URL, "--app-id", app.ID, "--pair-ttl", "1s", "--session-timeout", "6s", "--log-level", "warn"}, extra...)...)
		cmd.Env = append(os.Environ(), "APIMETER_TEST_AS_MAIN=1")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	waitUntil := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (%d events stored)", what, stored())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	first := consume()
	waitUntil("the first calls stored", 60*time.Second, func() bool { return stored() > 500 })
	first.Process.Signal(syscall.SIGKILL)
	first.Wait()
	killedAt := stored()
	if err := <-fed; err != nil {
		t.Fatal(err)
	}

	metricsAddr := freeAddr(t)
	second := consume("--metrics-listen", metricsAddr)
	waitUntil("every call stored", 90*time.Second, func() bool { return stored() >= len(calls) })
	// Its health on /metrics: nothing pending, nothing behind.
	waitUntil("/metrics to show the consumer caught up", 20*time.Second, func() bool {
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := string(b)
		return strings.Contains(m, `apimeter_kafka_pending{topic="apim"} 0`) && strings.Contains(m, `apimeter_kafka_lag{partition="0",topic="apim"} 0`) &&
			strings.Contains(m, `apimeter_kafka_lag{partition="1",topic="apim"} 0`) && strings.Contains(m, "apimeter_kafka_paired_total")
	})
	second.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- second.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("consume after SIGTERM: %v, want exit status 0", err)
		}
	case <-time.After(30 * time.Second):
		second.Process.Kill()
		t.Fatal("consume did not exit within 30s of SIGTERM")
	}
	var health struct {
		Events struct{ Duplicates int } `json:"events"`
	}
	if resp, err := http.Get(in.URL + "/healthz"); err == nil {
		json.NewDecoder(resp.Body).Decode(&health)
		resp.Body.Close()
	}
	t.Logf("killed with %d of %d calls stored; the collector dropped %d redelivered events as duplicates", killedAt, len(calls), health.Events.Duplicates)
	if n := stored(); n != len(calls) {
		t.Errorf("%d events stored, want %d", n, len(calls))
	}
	if got := metricsByVerbStatus(t, in.URL, f.Data); !maps.Equal(got, want) {
		t.Errorf("Metrics API by verb and status:\n got %v\nwant %v", got, want)
	}
}

// policyCall is one call as the APIM policy writes it: a request record on
// partition 0 and, unless it never came, a response on partition 1; key is
// how the Metrics API groups it (verb,status).
type policyCall struct {
	records []*kgo.Record
	key     string
}

// policyTopic starts a kfake cluster with a 2-partition topic "apim" and a
// producer writing to the partition each record names; both end with t.
func policyTopic(t *testing.T) (*kfake.Cluster, *kgo.Client) {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "apim"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	producer, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("apim"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(producer.Close)
	return cluster, producer
}

// feedPolicyCalls writes n calls to the topic as the policy does and
// returns how many of each "METHOD,status" it wrote.
func feedPolicyCalls(t *testing.T, producer *kgo.Client, n int) map[string]int {
	t.Helper()
	want := map[string]int{}
	var rs []*kgo.Record
	for _, c := range policyCalls(n) {
		want[c.key]++
		rs = append(rs, c.records...)
	}
	if err := producer.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return want
}

func policyCalls(n int) []policyCall {
	r := rand.New(rand.NewPCG(11, 12))
	methods := []string{"GET", "GET", "POST", "DELETE"}
	statuses := []int{200, 201, 400, 404, 500}
	enc := httpmsg.Encoder{}
	t0 := time.Now()
	out := make([]policyCall, n)
	for i := range out {
		id := httpmsg.NewID()
		ts := t0.Add(time.Duration(i) * time.Millisecond)
		req := httpmsg.Message{Kind: httpmsg.Request, ID: id, Method: methods[r.IntN(len(methods))],
			Target: "/accounts/" + strconv.Itoa(r.IntN(20)) + "/items", Header: apimeter.Headers{{Name: "Host", Value: "api.example"}}}
		resp := httpmsg.Message{Kind: httpmsg.Response, ID: id, Status: statuses[r.IntN(len(statuses))], Reason: "x",
			Header: apimeter.Headers{{Name: "Content-Type", Value: "application/json"}}, Body: []byte(`{"ok":1}`)}
		c := policyCall{key: req.Method + "," + strconv.Itoa(resp.Status)}
		reqRec := &kgo.Record{Partition: 0, Value: enc.Append(nil, &req), Timestamp: ts}
		respRec := &kgo.Record{Partition: 1, Value: enc.Append(nil, &resp), Timestamp: ts.Add(5 * time.Millisecond)}
		switch x := r.IntN(100); {
		case x < 4: // no response
			c.records, c.key = []*kgo.Record{reqRec}, req.Method+",0"
		case x < 34: // response written first
			c.records = []*kgo.Record{respRec, reqRec}
		default:
			c.records = []*kgo.Record{reqRec, respRec}
		}
		out[i] = c
	}
	return out
}

func metricsByVerbStatus(t *testing.T, base, data string) map[string]int {
	t.Helper()
	// A read key made as `apimeter keys create` makes it; the running
	// server picks it up on first use.
	_, key, err := auth.Create(data, auth.Spec{Org: "acme", Scope: auth.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	return metricsByVerbStatusKey(t, base, key)
}

// metricsByVerbStatusKey asks the Metrics API at base, with key, for the
// calls of acme/prod by verb and status.
func metricsByVerbStatusKey(t *testing.T, base, key string) map[string]int {
	t.Helper()
	from := time.Now().UTC().Add(-24 * time.Hour).Format("01/02/2006 15:04")
	to := time.Now().UTC().Add(24 * time.Hour).Format("01/02/2006 15:04")
	u := base + "/v1/o/acme/environments/prod/stats/request_verb,response_status_code?select=sum(message_count)&timeRange=" +
		strings.ReplaceAll(from+"~"+to, " ", "%20")
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var answer stats.Response
	if err := json.Unmarshal(b, &answer); err != nil || resp.StatusCode != 200 || len(answer.Environments) != 1 || answer.Environments[0].Dimensions == nil {
		t.Fatalf("Metrics API: %s %s (%v)", resp.Status, b, err)
	}
	out := map[string]int{}
	for _, d := range *answer.Environments[0].Dimensions {
		v, err := strconv.ParseFloat(fmt.Sprint(d.Metrics[0].Values[0]), 64)
		if err != nil {
			t.Fatalf("value of %s: %v", d.Name, err)
		}
		out[d.Name] = int(v)
	}
	return out
}

// TestServeConsumesKafka runs `apimeter serve --kafka-brokers ...`: the
// consumer inside the server stores the calls, /metrics shows its health,
// and cancelling (SIGTERM) returns cleanly.
func TestServeConsumesKafka(t *testing.T) {
	cluster, producer := policyTopic(t)
	const calls = 300
	want := feedPolicyCalls(t, producer, calls)

	addr := freeAddr(t)
	cmd := serveCmd{Config: instance.Config{Listen: addr, Data: t.TempDir(), BodyCap: 1024, MaxBodyBytes: 1 << 24,
		MaxBatchEvents: 1000, DedupeHorizon: time.Hour, DailyInterval: -1, StatsConfig: instance.StatsConfig{StatsQuota: -1}},
		Kafka: instance.ConsumerConfig{KafkaConn: instance.KafkaConn{Brokers: cluster.ListenAddrs()}, Topic: "apim", Group: "serve", Format: "apim", Org: "acme", Env: "prod",
			PairTTL: time.Second, MaxPending: 1000, SessionTimeout: 6 * time.Second}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.Run(ctx) }()
	defer cancel()

	base := "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
	var metrics string
	for {
		if resp, err := http.Get(base + "/metrics"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			metrics = string(b)
			if strings.Contains(metrics, fmt.Sprintf(`apimeter_kafka_stored_total{topic="apim"} %d`, calls)) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the embedded consumer did not store %d calls in time; /metrics:\n%s", calls, grepLines(metrics, "apimeter_kafka_"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, m := range []string{`apimeter_kafka_consumed_total{partition="0",topic="apim"}`, `apimeter_kafka_lag{partition="1",topic="apim"} 0`,
		`apimeter_kafka_pending{topic="apim"} 0`, `apimeter_kafka_orphaned_total{kind="no_response",topic="apim"}`} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s:\n%s", m, grepLines(metrics, "apimeter_kafka_"))
		}
	}
	if got := metricsByVerbStatus(t, base, cmd.Data); !maps.Equal(got, want) {
		t.Errorf("Metrics API by verb and status:\n got %v\nwant %v", got, want)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop within 30s")
	}
}
