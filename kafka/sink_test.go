package kafka_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/apimeter/apimeter/capture"
	"github.com/apimeter/apimeter/kafka"
	"github.com/apimeter/apimeter/moesif"
)

// readAll reads every record of the topic from the start: n of them.
func readAll(t *testing.T, c *kfake.Cluster, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records", len(out), n)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

// TestSinkRecords checks what a Sink writes for captured calls: in apim,
// the request on partition 0 and the response on partition 1, both keyed
// by the message id, which is the id the caller saw in
// X-Moesif-Transaction-Id, and no authorization header in any case; in
// json, one record per call keyed by its id, the token only as a
// fingerprint.
func TestSinkRecords(t *testing.T) {
	const token = "Bearer sink-secret-token"
	for _, format := range []kafka.Format{kafka.FormatAPIM, kafka.FormatJSON} {
		t.Run(string(format), func(t *testing.T) {
			c := newCluster(t)
			prod, err := kafka.NewProducer(kafka.ProducerConfig{Conn: kafka.Conn{Brokers: c.ListenAddrs()}, Topic: topic, Format: format})
			if err != nil {
				t.Fatal(err)
			}
			defer prod.Close(context.Background())
			capt, err := capture.New(capture.Options{Sink: prod.Sink(), LogBody: true, FlushInterval: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			h := capt.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusAccepted)
				w.Write([]byte(`{"ok":true}`))
			}))
			const calls = 10
			ids := map[string]bool{}
			for i := range calls {
				req := httptest.NewRequest("POST", fmt.Sprintf("/items/%d?page=2", i), strings.NewReader(`{"a":1}`))
				req.Header["authorization"] = []string{token} // as an HTTP/2 client sends it
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				ids[w.Header().Get(moesif.TransactionIDHeader)] = true
			}
			if err := capt.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if st := capt.Stats(); st.Sent != calls {
				t.Fatalf("capture stats %+v, want %d sent", st, calls)
			}
			want := calls
			if format == kafka.FormatAPIM {
				want = 2 * calls
			}
			halves := map[string]int{}
			for _, r := range readAll(t, c, want) {
				if bytes.Contains(r.Value, []byte("sink-secret-token")) {
					t.Errorf("record on partition %d holds the token:\n%s", r.Partition, r.Value)
				}
				if !ids[string(r.Key)] {
					t.Errorf("record keyed %q, not an id a caller was given", r.Key)
				}
				if format == kafka.FormatJSON {
					if !bytes.Contains(r.Value, []byte(`"event_id":"`+string(r.Key)+`"`)) {
						t.Errorf("json record keyed %q holds another event:\n%s", r.Key, r.Value)
					}
					continue
				}
				first, _, _ := bytes.Cut(r.Value, []byte("\n"))
				wantFirst := map[int32]string{0: "request:", 1: "response:"}[r.Partition] + string(r.Key)
				if string(first) != wantFirst {
					t.Errorf("partition %d record starts %q, want %q", r.Partition, first, wantFirst)
				}
				if bytes.Contains(bytes.ToLower(r.Value), []byte("authorization")) {
					t.Errorf("apim record holds an authorization header:\n%s", r.Value)
				}
				halves[string(r.Key)] |= 1 << r.Partition
			}
			for id, got := range halves {
				if got != 3 {
					t.Errorf("call %s: halves %b, want request and response", id, got)
				}
			}
		})
	}
}
