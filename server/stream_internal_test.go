package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
)

// gatedWriter is a ResponseWriter whose writes after the first wait until
// the test opens the gate: a browser that reads too slowly.
type gatedWriter struct {
	mu      sync.Mutex
	header  http.Header
	out     strings.Builder
	writes  int
	blocked chan struct{} // gets a value when a write starts waiting
	gate    chan struct{} // closed to let writes through
}

func (w *gatedWriter) Header() http.Header { return w.header }
func (w *gatedWriter) WriteHeader(int)     {}
func (w *gatedWriter) Flush()              {}
func (w *gatedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.writes++
	first := w.writes == 1
	w.mu.Unlock()
	if !first {
		select {
		case w.blocked <- struct{}{}:
		default:
		}
		<-w.gate
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.WriteString(string(p))
}

func (w *gatedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.String()
}

func ev(id, user string, status int) *apimeter.Event {
	return &apimeter.Event{ID: id, Org: "acme", Env: "prod", UserID: user, Status: status,
		Method: "GET", URI: "/x", RequestTime: time.Unix(1700000000, 0), ResponseTime: time.Unix(1700000000, 0)}
}

// A reader that does not keep up loses events, is told how many, and never
// makes Stored wait.
func TestStreamSlowReaderDropsAndIsTold(t *testing.T) {
	s := NewStream(StreamConfig{Buffer: 2})
	w := &gatedWriter{header: http.Header{}, blocked: make(chan struct{}, 1), gate: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/v1/o/acme/environments/prod/events/stream", nil)
	r.SetPathValue("org", "acme")
	r.SetPathValue("env", "prod")
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.serve(w, r, func(w http.ResponseWriter, r *http.Request, err error) { t.Errorf("serve: %v", err) }, "k", func() error { return nil })
	}()
	for s.Subscribers() == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := s.Stored(ctx, []*apimeter.Event{ev("first", "513", 200)}); err != nil {
		t.Fatal(err)
	}
	<-w.blocked // the handler holds "first" and cannot write it
	var burst []*apimeter.Event
	for i := range 10 {
		burst = append(burst, ev("burst-"+string(rune('a'+i)), "513", 200))
	}
	stored := make(chan error, 1)
	go func() { stored <- s.Stored(ctx, burst) }()
	select {
	case err := <-stored:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stored waited on a subscriber that does not read")
	}
	close(w.gate)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(w.String(), "event: dropped") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	out := w.String()
	for _, want := range []string{`"event_id":"first"`, `"event_id":"burst-a"`, `"event_id":"burst-b"`, "event: dropped\ndata: {\"dropped\":8}\n\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("stream output lacks %q; got:\n%s", want, out)
		}
	}
	if strings.Contains(out, `"event_id":"burst-c"`) {
		t.Errorf("burst-c should have been dropped (buffer 2); got:\n%s", out)
	}
	if n := s.Subscribers(); n != 0 {
		t.Errorf("after the client left, %d subscribers remain", n)
	}
}

func TestStreamFilterMatch(t *testing.T) {
	e := ev("1", "513", 503)
	e.CompanyID, e.APIName, e.Route = "abcdef", "accounts", "/accounts/{id}/message"
	for _, tc := range []struct {
		name string
		f    StreamFilter
		want bool
	}{
		{"org and env only", StreamFilter{Org: "acme", Env: "prod"}, true},
		{"other env", StreamFilter{Org: "acme", Env: "test"}, false},
		{"other org", StreamFilter{Org: "other", Env: "prod"}, false},
		{"user", StreamFilter{Org: "acme", Env: "prod", UserID: "513"}, true},
		{"other user", StreamFilter{Org: "acme", Env: "prod", UserID: "1234"}, false},
		{"company", StreamFilter{Org: "acme", Env: "prod", CompanyID: "abcdef"}, true},
		{"other company", StreamFilter{Org: "acme", Env: "prod", CompanyID: "contoso"}, false},
		{"api", StreamFilter{Org: "acme", Env: "prod", APIName: "accounts"}, true},
		{"other api", StreamFilter{Org: "acme", Env: "prod", APIName: "orders"}, false},
		{"route", StreamFilter{Org: "acme", Env: "prod", Route: "/accounts/{id}/message"}, true},
		{"other route", StreamFilter{Org: "acme", Env: "prod", Route: "/orders"}, false},
		{"status", StreamFilter{Org: "acme", Env: "prod", Status: 503}, true},
		{"other status", StreamFilter{Org: "acme", Env: "prod", Status: 200}, false},
		{"errors", StreamFilter{Org: "acme", Env: "prod", Errors: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.f.Match(e); got != tc.want {
				t.Errorf("Match = %v, want %v", got, tc.want)
			}
		})
	}
	ok := ev("2", "513", 200)
	if (&StreamFilter{Org: "acme", Env: "prod", Errors: true}).Match(ok) {
		t.Error("errors=true matched a 200")
	}
	if !(&StreamFilter{Org: "acme", Env: "prod", Errors: true}).Match(ev("3", "513", 0)) {
		t.Error("errors=true did not match a call with no response (status 0)")
	}
}

func TestStreamRefusesPastMaxAndAfterClose(t *testing.T) {
	s := NewStream(StreamConfig{MaxSubscribers: 1})
	sub, err := s.subscribe(StreamFilter{Org: "a", Env: "b"}, "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.subscribe(StreamFilter{Org: "a", Env: "b"}, "k"); err != errTooManyStreams {
		t.Errorf("second subscriber past MaxSubscribers 1: err = %v, want too_many_streams", err)
	}
	s.Close()
	select {
	case <-sub.done:
	default:
		t.Error("Close did not end the open stream")
	}
	s.unsubscribe(sub)
	if _, err := s.subscribe(StreamFilter{Org: "a", Env: "b"}, "k"); err == nil {
		t.Error("a closed stream took a subscriber")
	}
}

// FuzzStreamFilter: any query string gives a filter or a 400 naming the
// parameter, never a panic.
func FuzzStreamFilter(f *testing.F) {
	for _, q := range []string{"", "user_id=513&errors=true", "status=503", "status=abc", "errors=maybe", "route=%2Faccounts%2F%7Bid%7D&api_name=accounts", "status=99999999999999999999"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		r := httptest.NewRequest(http.MethodGet, "/x", nil)
		r.URL.RawQuery = q
		r.SetPathValue("org", "acme")
		r.SetPathValue("env", "prod")
		sf, err := streamFilter(r)
		if err != nil {
			ae, ok := err.(*APIError)
			if !ok || ae.Status != http.StatusBadRequest || ae.Field == "" {
				t.Fatalf("streamFilter(%q): %v, want a 400 naming the parameter", q, err)
			}
			return
		}
		if sf.Org != "acme" || sf.Env != "prod" || (sf.Status != 0 && (sf.Status < 100 || sf.Status > 999)) {
			t.Fatalf("streamFilter(%q) = %+v", q, sf)
		}
	})
}
