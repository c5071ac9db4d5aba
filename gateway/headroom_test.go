package gateway_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/gateway"
	"github.com/apimeter/apimeter/internal/redistest"
)

// TestHeadroom: calls through a gateway are read back as headroom by a
// QuotaState on the same counters (in memory, and on Redis as gateways
// that run apart from the server share them), per subject, for the
// upstreams of one org and env only, without counting anything.
func TestHeadroom(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer backend.Close()
	cfg, err := gateway.ParseConfig([]byte(`
org: acme
env: prod
upstreams:
  - {name: pay, url: ` + backend.URL + `}
  - {name: ship, url: ` + backend.URL + `, path_prefix: /ship, org: other}
company_rules: ["header:X-Company-Id"]
quotas:
  - {name: per-company, by: company, per: minute, limit: 5, overrides: {c2: 50}}
  - {name: ship-only, by: company, per: day, limit: 9, apis: [ship]}
  - {name: per-user, by: user, per: hour, limit: 3}
`))
	if err != nil {
		t.Fatal(err)
	}
	for name, counter := range map[string]gateway.Counter{
		"memory": gateway.NewMemoryCounter(),
		"redis":  gateway.NewRedisCounter(redistest.Start(t), "test:"),
	} {
		t.Run(name, func(t *testing.T) {
			g, err := gateway.New(cfg, gateway.Options{Sink: gateway.IngestSinks(discard{}), Counter: counter})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close(context.Background())
			st, err := gateway.NewQuotaState(cfg, counter)
			if err != nil {
				t.Fatal(err)
			}
			// The quota's window is the wall clock's minute, which the
			// gateway reads itself: keep the calls and the reads inside
			// one minute by not starting in its last two seconds.
			if s := time.Now().Second(); s >= 58 {
				time.Sleep(time.Duration(61-s) * time.Second)
			}
			now := time.Now()
			for _, c := range []string{"c1", "c1", "c1", "c2"} {
				req := httptest.NewRequest("GET", "/pay", nil)
				req.Header.Set("X-Company-Id", c)
				g.ServeHTTP(httptest.NewRecorder(), req)
			}
			ctx := context.Background()
			for _, r := range []interface {
				Headroom(context.Context, string, string, string, string, time.Time) ([]gateway.Headroom, error)
			}{st, g} {
				for _, c := range []struct {
					id         string
					used, left int64
				}{{"c1", 3, 2}, {"c2", 1, 49}, {"c9", 0, 5}} {
					hs, err := r.Headroom(ctx, "acme", "prod", gateway.ByCompany, c.id, now)
					if err != nil {
						t.Fatal(err)
					}
					if len(hs) != 1 || hs[0].Name != "per-company" || hs[0].Used != c.used || hs[0].Remaining != c.left {
						t.Errorf("%s: %+v, want per-company used %d, %d left", c.id, hs, c.used, c.left)
					}
				}
				// Reading counts nothing.
				if hs, _ := r.Headroom(ctx, "acme", "prod", gateway.ByCompany, "c1", now); len(hs) != 1 || hs[0].Used != 3 {
					t.Errorf("read twice: %+v", hs)
				}
				// A quota of every API counts the upstreams of every org the
				// gateway serves, as the gateway counts it; ship-only counts
				// only org other's upstream.
				if hs, _ := r.Headroom(ctx, "other", "prod", gateway.ByCompany, "c1", now); len(hs) != 2 || hs[1].Name != "ship-only" || hs[1].Used != 0 {
					t.Errorf("org other: %+v", hs)
				}
				if hs, _ := r.Headroom(ctx, "acme", "prod", gateway.ByUser, "u1", now); len(hs) != 1 || hs[0].Limit != 3 {
					t.Errorf("user: %+v", hs)
				}
			}
		})
	}
}

type discard struct{}

func (discard) Ingest(_ context.Context, events []apimeter.Event) (apimeter.AppendResult, error) {
	return apimeter.AppendResult{}, nil
}
