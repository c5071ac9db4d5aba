package instance

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/apps"
)

// TestServeOTLP: a started instance (`apimeter serve`) answers OTLP/HTTP on its listener with
// an application id and no key, stores the SERVER span and counts the
// export on /metrics.
func TestServeOTLP(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	f := Config{Listen: "127.0.0.1:0", Data: filepath.Join(dir, "data"), BodyCap: 1024, MaxBodyBytes: 1 << 20, MaxBatchEvents: 100,
		DedupeHorizon: time.Hour, StatsConfig: StatsConfig{StatsQuota: -1}}
	in, err := Start(ctx, f)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer in.Close()
	app, err := apps.Create(f.Data, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Second).UnixNano()
	body := `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},"scopeSpans":[{"spans":[
	  {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /a","kind":2,
	   "startTimeUnixNano":"` + strconv.FormatInt(start, 10) + `","endTimeUnixNano":"` + strconv.FormatInt(start+5e6, 10) + `",
	   "attributes":[{"key":"http.request.method","value":{"stringValue":"GET"}},{"key":"url.path","value":{"stringValue":"/a"}},
	     {"key":"http.response.status_code","value":{"intValue":"200"}}]},
	  {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"aaa19b7ec3c1b174","name":"GET","kind":3,
	   "startTimeUnixNano":"` + strconv.FormatInt(start, 10) + `","attributes":[{"key":"http.request.method","value":{"stringValue":"GET"}}]}]}]}]}`
	req, _ := http.NewRequest(http.MethodPost, in.URL+"/v1/traces", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+app.ID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || string(answer) != "{}" {
		t.Fatalf("export: %d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), answer)
	}
	resp, err = http.Get(in.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`apimeter_otlp_requests_total{code="200",signal="traces"} 1`,
		`apimeter_otlp_spans_total{kind="server",result="stored"} 1`,
		`apimeter_otlp_spans_total{kind="client",result="ignored"} 1`,
		`apimeter_events_total{result="stored"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
