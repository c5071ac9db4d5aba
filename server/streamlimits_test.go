package server_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/server"
)

// openStream opens the event stream of org/prod with key and returns the
// answer (its body open when 200).
func (e *env) openStream(t *testing.T, ctx context.Context, org, key string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.http.URL+"/v1/o/"+org+"/environments/prod/events/stream", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(strings.NewReader(string(b)))
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func (e *env) newKey(t *testing.T, org string) (auth.Key, string) {
	t.Helper()
	k, secret, err := e.keys.Create(auth.Spec{Org: org, Scope: auth.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	return k, secret
}

// TestStreamSlotsLimitedPerOrgAndKey: with 4 slots, 2 per org and 1 per
// key, one org holding its 2 streams gets a 429 for a third, a key its
// second, while another org still opens one: one tenant cannot take every
// slot (before, the slots were shared by all, and the third stream of
// the same org was taken).
func TestStreamSlotsLimitedPerOrgAndKey(t *testing.T) {
	e := newEnv(t, server.Config{Stream: server.StreamConfig{MaxSubscribers: 4, MaxPerOrg: 2, MaxPerKey: 1}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, k1 := e.newKey(t, "acme")
	_, k2 := e.newKey(t, "acme")
	_, k3 := e.newKey(t, "acme")
	_, other := e.newKey(t, "globex")

	if r := e.openStream(t, ctx, "acme", k1); r.StatusCode != 200 {
		t.Fatalf("first stream of acme: %s", r.Status)
	}
	if r := e.openStream(t, ctx, "acme", k1); r.StatusCode != http.StatusTooManyRequests {
		t.Errorf("second stream of one key: %s, want 429", r.Status)
	}
	if r := e.openStream(t, ctx, "acme", k2); r.StatusCode != 200 {
		t.Fatalf("second stream of acme, another key: %s", r.Status)
	}
	r := e.openStream(t, ctx, "acme", k3)
	var b []byte
	if r.StatusCode != 200 { // a 200 is a stream: its body never ends
		b, _ = io.ReadAll(r.Body)
	}
	if r.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(b), "org acme") {
		t.Errorf("third stream of acme: %s %s, want 429 naming the org's limit", r.Status, b)
	}
	if r := e.openStream(t, ctx, "globex", other); r.StatusCode != 200 {
		t.Errorf("stream of another org while acme holds its streams: %s, want 200", r.Status)
	}
}

// TestStreamClosedWhenKeyRevoked: an open stream whose key is revoked
// ends (with `event: closed`) within the recheck, as every other use of
// the key stops; before, it kept streaming. The 30 s guard only turns a
// stream that stays open into a failure.
func TestStreamClosedWhenKeyRevoked(t *testing.T) {
	e := newEnv(t, server.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k, secret := e.newKey(t, "acme")
	resp := e.openStream(t, ctx, "acme", secret)
	if resp.StatusCode != 200 {
		t.Fatalf("open stream: %s", resp.Status)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	// The stream is open once its first comment arrives.
	for l := range lines {
		if strings.HasPrefix(l, ": connected") {
			break
		}
	}
	if _, err := e.keys.Revoke("acme", k.ID); err != nil {
		t.Fatal(err)
	}
	guard := time.After(30 * time.Second)
	var closedEvent bool
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				if !closedEvent {
					t.Error("the stream ended without event: closed")
				}
				return
			}
			if l == "event: closed" {
				closedEvent = true
			}
		case <-guard:
			t.Fatal("the stream of a revoked key was still open after 30 s")
		}
	}
}
