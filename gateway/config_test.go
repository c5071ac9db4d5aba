package gateway_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/gateway"
)

func TestParseConfig(t *testing.T) {
	b, err := os.ReadFile("testdata/counting-guide.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.ParseConfig(b)
	if err != nil {
		t.Fatalf("testdata/counting-guide.yaml: %v", err)
	}
	u := cfg.Upstreams[0]
	if u.Name != "accounts" || u.Org != "acme" || u.Env != "prod" || len(u.Routes) != 2 ||
		time.Duration(cfg.Timeouts.Upstream) != 30*time.Second || cfg.Quotas[1].Overrides["abcdef"] != 1000000 {
		t.Fatalf("parsed %+v", cfg)
	}

	const up = "upstreams: [{name: a, url: 'http://127.0.0.1:1'}]\n"
	bad := []struct{ name, yaml, want string }{
		{"empty", "", "upstreams: at least one"},
		{"unknown key", up + "listn: x\n", "listn"},
		{"no name", "upstreams: [{url: 'http://x'}]", "upstreams[0].name"},
		{"bad URL", "upstreams: [{name: a, url: 'ftp://x'}]", "upstreams[0].url"},
		{"URL without host", "upstreams: [{name: a, url: 'http://'}]", "upstreams[0].url"},
		{"same name twice", "upstreams: [{name: a, url: 'http://x'}, {name: a, url: 'http://y'}]", "used twice"},
		{"same route twice", "upstreams: [{name: a, url: 'http://x', path_prefix: /p}, {name: b, url: 'http://y', path_prefix: /p/}]", "already upstreams[0]"},
		{"relative prefix", "upstreams: [{name: a, url: 'http://x', path_prefix: p}]", "path_prefix"},
		{"strip without prefix", "upstreams: [{name: a, url: 'http://x', strip_prefix: true}]", "strip_prefix"},
		{"bad route", "upstreams: [{name: a, url: 'http://x', routes: ['/a/{id']}]", "routes"},
		{"conflicting routes", "upstreams: [{name: a, url: 'http://x', routes: ['/a/{id}', '/a/{name}']}]", "routes"},
		{"route without path", "upstreams: [{name: a, url: 'http://x', routes: ['GET']}]", "routes"},
		{"bad duration", up + "timeouts: {upstream: soon}\n", "duration"},
		{"quota by", up + "quotas: [{name: q, by: ip, per: minute, limit: 1}]", "quotas[0].by"},
		{"quota per", up + "quotas: [{name: q, by: user, per: week, limit: 1}]", "quotas[0].per"},
		{"quota limit", up + "quotas: [{name: q, by: user, per: minute, limit: -1}]", "quotas[0].limit"},
		{"quota API", up + "quotas: [{name: q, by: user, per: minute, limit: 1, apis: [b]}]", "names no upstream"},
		{"quota name", up + "quotas: [{name: 'a:b', by: user, per: minute, limit: 1}]", "quotas[0].name"},
		{"company rule", up + "company_rules: ['path:/x']", "company_rules[0]"},
		{"billing tz", up + "billing_tz: Mars/Base", "billing_tz"},
		{"wrong type", up + "max_body_bytes: lots", "max_body_bytes"},
		{"sample rate", up + "sample_rate: 1.5", "sample_rate"},
	}
	for _, tc := range bad {
		_, err := gateway.ParseConfig([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got error %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
	if cfg, err := gateway.ParseConfig([]byte(up + "quotas: [{name: q, by: user, per: month, limit: 1}]")); err != nil || cfg.Quotas[0].Per != "billing_period" {
		t.Errorf("per: month: got %+v, %v; want billing_period", cfg.Quotas, err)
	}
}

// FuzzParseConfig: any input is either a checked Config or an error, never
// a panic, and a Config it accepts builds a Gateway.
func FuzzParseConfig(f *testing.F) {
	if b, err := os.ReadFile("testdata/counting-guide.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("upstreams: [{name: a, url: 'http://x', routes: ['/a/{id}'], host: h, path_prefix: /p, strip_prefix: true}]\nquotas: [{name: q, by: api_key, per: day, limit: 3}]"))
	f.Add([]byte("upstreams:\n  - {name: a, url: 'https://x:1/b'}\ntimeouts: {read: -1s, idle: 0}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := gateway.ParseConfig(b)
		if err != nil {
			return
		}
		g, err := gateway.New(cfg, gateway.Options{Sink: sinkTo(&keepSink{})})
		if err != nil {
			t.Fatalf("ParseConfig accepted %q but New refused it: %v", b, err)
		}
		g.Close(t.Context())
	})
}
