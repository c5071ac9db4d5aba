package instance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/meter"
)

// TestPortalMetersWired: a server's portal shows a customer's meters, and
// its statements when the server signs them (--billing-secret-file), else
// answers 404 for them.
func TestPortalMetersWired(t *testing.T) {
	ctx := context.Background()
	for _, signed := range []bool{true, false} {
		t.Run(fmt.Sprint("signed=", signed), func(t *testing.T) {
			dir := t.TempDir()
			f := Config{Listen: "127.0.0.1:0", Data: filepath.Join(dir, "data"), BodyCap: 1024, MaxBodyBytes: 1 << 24, MaxBatchEvents: 1000,
				DedupeHorizon: time.Hour}
			if signed {
				f.BillingSecretFile = filepath.Join(dir, "secret")
				if err := os.WriteFile(f.BillingSecretFile, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			in, err := Start(ctx, f)
			if err != nil {
				t.Fatalf("start: %v", err)
			}
			defer in.Close()
			if err := in.Meters.PutMeter(ctx, meter.Meter{ID: "m1", Slug: "requests", EventType: "request", Aggregation: meter.Count, Org: "acme", Env: "prod"}); err != nil {
				t.Fatal(err)
			}
			now := time.Now().UTC()
			// The start of the month: in the current period of the
			// meters (calendar months by default) and of the statements.
			month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
			var evs []meter.Event
			for i, subject := range []string{"c1", "c1", "c1", "c2"} {
				b, _ := json.Marshal(map[string]any{"specversion": "1.0", "source": "t", "type": "request", "subject": subject,
					"id": fmt.Sprint("e", i), "time": month.Format(time.RFC3339Nano), "data": map[string]any{}})
				got, err := meter.Decode(meter.ContentTypeEvent, b, "acme", "prod", now, meter.Limits{})
				if err != nil {
					t.Fatal(err)
				}
				evs = append(evs, got...)
			}
			if _, err := in.Meters.AppendUsage(ctx, evs); err != nil {
				t.Fatal(err)
			}
			_, admin, err := auth.Create(f.Data, auth.Spec{Org: "acme", Scope: auth.ScopeAdmin})
			if err != nil {
				t.Fatal(err)
			}
			do := func(method, path, cred string, body, out any) int {
				t.Helper()
				b, _ := json.Marshal(body)
				req, _ := http.NewRequest(method, in.URL+path, bytes.NewReader(b))
				req.Header.Set("Authorization", "Bearer "+cred)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if out != nil && resp.StatusCode < 300 {
					if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
						t.Fatal(err)
					}
				}
				return resp.StatusCode
			}
			var tok struct{ Token string }
			if code := do("POST", "/v1/portal/tokens", admin, map[string]any{"env": "prod", "company_id": "c1", "ttl": "1h"}, &tok); code != http.StatusCreated {
				t.Fatalf("mint: %d", code)
			}
			var ms struct {
				Subject string
				Meters  []struct {
					Slug  string
					Value float64
				}
			}
			if code := do("GET", "/portal/api/v1/meters", tok.Token, nil, &ms); code != http.StatusOK || ms.Subject != "c1" || len(ms.Meters) != 1 || ms.Meters[0].Value != 3 {
				t.Fatalf("meters: %d %+v, want c1's 3 requests", code, ms)
			}
			var st struct {
				Statements []struct {
					Statement struct {
						Customer string
						Value    float64
					}
				}
			}
			code := do("GET", "/portal/api/v1/statements", tok.Token, nil, &st)
			if !signed {
				if code != http.StatusNotFound {
					t.Fatalf("statements without a secret: %d, want 404", code)
				}
				return
			}
			if code != http.StatusOK || len(st.Statements) != 1 || st.Statements[0].Statement.Customer != "c1" || st.Statements[0].Statement.Value != 3 {
				t.Fatalf("statements: %d %+v", code, st)
			}
		})
	}
}
