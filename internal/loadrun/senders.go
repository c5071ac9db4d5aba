package loadrun

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/apimeter/apimeter/workload"
)

// sender posts batches of events with ids of its own and retries each
// batch until the collector acknowledges it, as Moesif's SDKs and the
// capture sink do.
type sender struct {
	id     int
	url    string
	appID  string
	batch  int
	client *http.Client
	// phases, when set, records each post by the phase it started in.
	phases *phases

	mu       sync.Mutex
	acked    []string
	statuses map[int]int // answers by status code; 0 for no answer
	refused  int         // batches refused with a 4xx: good data failed
	gaveUp   int         // batches never acknowledged before the drain deadline
	sent     int         // batches sent (first tries)
}

func newSender(id int, url, appID string, batch int) *sender {
	return &sender{id: id, url: url, appID: appID, batch: batch, statuses: map[int]int{},
		client: &http.Client{Timeout: 20 * time.Second}}
}

// body makes batch seq of this sender: events whose ids say who sent them.
func (s *sender) body(gen *workload.Generator, seq int) ([]byte, []string) {
	evs := gen.Batch(s.batch)
	ids := make([]string, len(evs))
	for i := range evs {
		evs[i].EventID = fmt.Sprintf("s%d-%d-%d", s.id, seq, i)
		ids[i] = evs[i].EventID
	}
	b, _ := json.Marshal(evs)
	return b, ids
}

// run sends batches until load is done, then retries what is unacknowledged
// until drain is done.
func (s *sender) run(load, drain context.Context) {
	gen := newGen(s.id)
	for seq := 0; load.Err() == nil; seq++ {
		body, ids := s.body(gen, seq)
		s.mu.Lock()
		s.sent++
		s.mu.Unlock()
		s.deliver(drain, body, ids)
	}
}

func (s *sender) deliver(drain context.Context, body []byte, ids []string) {
	backoff := 50 * time.Millisecond
	for {
		phase, t0 := 0, time.Now()
		if s.phases != nil {
			phase = s.phases.now()
		}
		code := s.post(drain, body)
		s.phases.add(0, phase, code, code == http.StatusOK, time.Since(t0))
		s.mu.Lock()
		s.statuses[code]++
		switch {
		case code == http.StatusOK:
			s.acked = append(s.acked, ids...)
			s.mu.Unlock()
			return
		case code >= 400 && code < 500 && code != http.StatusTooManyRequests && code != http.StatusRequestTimeout:
			s.refused++
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		select {
		case <-drain.Done():
			s.mu.Lock()
			s.gaveUp++
			s.mu.Unlock()
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (s *sender) post(ctx context.Context, body []byte) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/v1/events/batch", bytes.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Moesif-Application-Id", s.appID)
	resp, err := s.client.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func newGen(id int) *workload.Generator { return workload.New(uint64(1000+id), 24*time.Hour) }
