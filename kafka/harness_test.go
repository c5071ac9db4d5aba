package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/httpmsg"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/stats"
	"github.com/apimeter/apimeter/store/duckdb"
)

const topic = "apim-calls"

// newCluster starts an in-process Kafka (franz-go's kfake: the real
// protocol) with a 2-partition topic, as the APIM policy's event hub.
func newCluster(t testing.TB) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// stack is a real server: DuckDB file, the collector's ingest path and the
// Metrics API.
type stack struct {
	st  *duckdb.Store
	srv *server.Server
	url string
	key string // a read key of org acme
}

func newStack(t testing.TB) *stack {
	t.Helper()
	dir := t.TempDir()
	st, err := duckdb.Open(context.Background(), filepath.Join(dir, "events.duckdb"), duckdb.Options{DailyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := apps.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := auth.Create(dir, auth.Spec{Org: "acme", Scope: auth.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{Store: st, Apps: reg, Scrubber: scrub.New(nil, nil, 1024), Auth: auth.New(auth.Config{Keys: keys})})
	stats.NewHandler(stats.Config{DB: st.DB(), Dialect: stats.DuckDB{}, QuotaPerMinute: -1}).Register(srv)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { hs.Close(); st.Close() })
	return &stack{st: st, srv: srv, url: hs.URL, key: key}
}

// byVerbStatus asks the Metrics API for the calls of acme/prod per verb and
// status, over the day around now.
func (s *stack) byVerbStatus(t testing.TB) map[string]int {
	t.Helper()
	from := time.Now().UTC().Add(-24 * time.Hour).Format("01/02/2006 15:04")
	to := time.Now().UTC().Add(24 * time.Hour).Format("01/02/2006 15:04")
	u := s.url + "/v1/o/acme/environments/prod/stats/request_verb,response_status_code?select=sum(message_count)&timeRange=" +
		strings.ReplaceAll(from+"~"+to, " ", "%20")
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+s.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var answer stats.Response
	if err := json.Unmarshal(b, &answer); err != nil || resp.StatusCode != 200 || len(answer.Environments) != 1 {
		t.Fatalf("Metrics API: %s %s (%v)", resp.Status, b, err)
	}
	out := map[string]int{}
	if answer.Environments[0].Dimensions == nil {
		return out
	}
	for _, d := range *answer.Environments[0].Dimensions {
		v, err := strconv.ParseFloat(d.Metrics[0].Values[0].(string), 64)
		if err != nil {
			t.Fatalf("value of %s: %v", d.Name, err)
		}
		out[d.Name] = int(v)
	}
	return out
}

// call is one generated API call and how the feed delivers it.
type call struct {
	id, method, target string
	status             int
	reqTS, respTS      time.Time
	respFirst          bool // the response is written before the request
	noResp, noReq      bool
	auth               string // a lower-case authorization header value, if any
}

// policyRequest builds the request message exactly as Azure API Management's policy
// does, including its case-sensitive secret filter (which lets a lower-case
// authorization through).
func policyRequest(id, method, target string, headers [][2]string, body string) []byte {
	s := "request:" + id + "\n" + fmt.Sprintf("%s %s HTTP/1.1\r\n", method, target)
	var hs []string
	for _, h := range headers {
		if h[0] != "Authorization" && h[0] != "Ocp-Apim-Subscription-Key" {
			hs = append(hs, fmt.Sprintf("%s: %s", h[0], h[1]))
		}
	}
	if len(hs) > 0 {
		s += strings.Join(hs, "\r\n") + "\r\n"
	}
	if r := []rune(body); len(r) > 1024 {
		body = string(r[:1024])
	}
	return []byte(s + "\r\n" + body)
}

func policyResponse(id string, status int, headers [][2]string, body string) []byte {
	s := "response:" + id + "\n" + fmt.Sprintf("HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	var hs []string
	for _, h := range headers {
		hs = append(hs, fmt.Sprintf("%s: %s", h[0], h[1]))
	}
	if len(hs) > 0 {
		s += strings.Join(hs, "\r\n") + "\r\n"
	}
	if r := []rune(body); len(r) > 1024 {
		body = string(r[:1024])
	}
	return []byte(s + "\r\n" + body)
}

// genCalls makes n calls: about 30% with the response written first, 5%
// whose response never comes, 3% whose request never comes, 10% with a
// lower-case authorization header.
func genCalls(seed uint64, n int, t0 time.Time) []call {
	r := rand.New(rand.NewPCG(seed, 2))
	methods := []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	statuses := []int{200, 200, 200, 201, 404, 500, 503}
	cs := make([]call, n)
	for i := range cs {
		c := &cs[i]
		c.id = httpmsg.NewID()
		c.method = methods[r.IntN(len(methods))]
		c.target = fmt.Sprintf("/accounts/%d/orders?page=%d", r.IntN(50), r.IntN(5))
		c.status = statuses[r.IntN(len(statuses))]
		c.reqTS = t0.Add(time.Duration(i) * time.Millisecond)
		c.respTS = c.reqTS.Add(time.Duration(1+r.IntN(300)) * time.Millisecond)
		switch x := r.Float64(); {
		case x < 0.05:
			c.noResp = true
		case x < 0.08:
			c.noReq = true
		case x < 0.38:
			c.respFirst = true
		}
		if r.IntN(10) == 0 {
			c.auth = "Bearer leaked-token-" + strconv.Itoa(i)
		}
	}
	return cs
}

func (c *call) request() []byte {
	h := [][2]string{{"Host", "api.contoso.example"}, {"Accept", "application/json"}, {"User-Agent", "test/1.0"}}
	if c.auth != "" {
		h = append(h, [2]string{"authorization", c.auth})
	}
	h = append(h, [2]string{"Authorization", "Bearer dropped-by-the-policy"})
	body := ""
	if c.method == "POST" || c.method == "PUT" {
		body = `{"note":"` + strings.Repeat("é", 1200) + `"}`
		h = append(h, [2]string{"Content-Type", "application/json"}, [2]string{"Content-Length", strconv.Itoa(len(body))})
	}
	return policyRequest(c.id, c.method, c.target, h, body)
}

func (c *call) response() []byte {
	return policyResponse(c.id, c.status, [][2]string{{"Content-Type", "application/json"}}, `{"ok":true}`)
}

// feeder writes records to the topic as the policy does: requests to
// partition 0, responses to partition 1.
type feeder struct {
	cl *kgo.Client
}

func newFeeder(t testing.TB, c *kfake.Cluster) *feeder {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &feeder{cl: cl}
}

func (f *feeder) write(t testing.TB, rs ...*kgo.Record) {
	t.Helper()
	if err := f.cl.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func reqRecord(v []byte, ts time.Time) *kgo.Record {
	return &kgo.Record{Partition: 0, Value: v, Timestamp: ts}
}

func respRecord(v []byte, ts time.Time) *kgo.Record {
	return &kgo.Record{Partition: 1, Value: v, Timestamp: ts}
}

// feed writes the calls in chunks, the responses of respFirst calls in a
// chunk before their requests.
func (f *feeder) feed(t testing.TB, cs []call) {
	t.Helper()
	const chunk = 50
	for i := 0; i < len(cs); i += chunk {
		part := cs[i:min(i+chunk, len(cs))]
		var first, rest []*kgo.Record
		now := time.Now()
		for j := range part {
			c := &part[j]
			// Stamped when written, as Event Hubs stamps the enqueue time:
			// the pair TTL runs on these.
			c.reqTS, c.respTS = now, now.Add(c.respTS.Sub(c.reqTS))
			if c.respFirst {
				first = append(first, respRecord(c.response(), c.respTS))
			}
			if !c.noReq {
				rest = append(rest, reqRecord(c.request(), c.reqTS))
			}
			if !c.respFirst && !c.noResp {
				rest = append(rest, respRecord(c.response(), c.respTS))
			}
		}
		if len(first) > 0 {
			f.write(t, first...)
		}
		f.write(t, rest...)
	}
}

// expected is what the Metrics API must answer for calls: complete calls
// by verb and status, requests alone under status 0, responses alone
// under no verb.
func expected(cs []call) map[string]int {
	m := map[string]int{}
	for _, c := range cs {
		switch {
		case c.noResp:
			m[c.method+",0"]++
		case c.noReq:
			m[","+strconv.Itoa(c.status)]++
		default:
			m[c.method+","+strconv.Itoa(c.status)]++
		}
	}
	return m
}

func vector(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "apim", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last state: %s", what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// running is a consumer running in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func (r *running) stop() error {
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.done
	})
	return r.err
}
