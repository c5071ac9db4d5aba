package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apimeter/apimeter/demo"
	"github.com/apimeter/apimeter/instance"
	"github.com/apimeter/apimeter/internal/redistest"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/store/clickhouse"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
	"github.com/apimeter/apimeter/workload"
)

// runMain runs the apimeter command as a child process and returns its exit
// code, stdout and stderr.
func runMain(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "APIMETER_TEST_AS_MAIN=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("apimeter %v: %v", args, err)
	}
	return code, stdout.String(), stderr.String()
}

// lastLine runs apimeter and returns the last line it printed on stdout
// (what apps create and keys create print), failing t unless it exits 0.
func lastLine(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := runMain(t, args...)
	if code != 0 {
		t.Fatalf("apimeter %v: exit %d\n%s", redactArgs(args), code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

func redactArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = clickhouse.Redact(a)
	}
	return out
}

// redisURL starts a redis-server for t and returns its URL.
func redisURL(t *testing.T) string {
	t.Helper()
	return "redis://" + redistest.Start(t).Options().Addr + "/0"
}

// TestClickHouseStoreEndToEnd: application ids and keys are created with
// --store clickhouse://..., two collectors (serve, each with a data
// directory of its own holding only the same fingerprint key) take half of
// the batches each, and either answers the Metrics API, the event stream
// and the usage API with the counts sent. A third collector with another
// fingerprint key is refused at start.
func TestClickHouseStoreEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes; skipped with -short")
	}
	dsn := chtest.Shared(t).DSN(chtest.Database(t))
	rurl := redisURL(t)
	admin := t.TempDir() // the operator's machine: no server runs there

	app := lastLine(t, "apps", "create", "--store", dsn, "--data", admin, "--org", "acme", "--env", "prod")
	key := lastLine(t, "keys", "create", "--store", dsn, "--data", admin, "--org", "acme", "--scope", "read")
	if _, out, _ := runMain(t, "apps", "list", "--store", dsn, "--data", admin); !strings.Contains(out, app) {
		t.Fatalf("apps list --store does not list the new id:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(admin, "apps.json")); err == nil {
		t.Error("apps create --store clickhouse://... wrote apps.json in --data")
	}
	if _, err := os.Stat(filepath.Join(admin, "keys.json")); err == nil {
		t.Error("keys create --store clickhouse://... wrote keys.json in --data")
	}

	dataA, dataB := t.TempDir(), t.TempDir()
	a := startChild(t, dataA, "--store", dsn, "--redis", rurl)
	defer a.kill9(t)
	// The second collector gets the first one's fingerprint key, as the
	// operator copies it to every machine.
	fp, err := os.ReadFile(filepath.Join(dataA, scrub.FingerprintKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataB, scrub.FingerprintKeyFile), fp, 0o600); err != nil {
		t.Fatal(err)
	}
	b := startChild(t, dataB, "--store", dsn, "--redis", rurl)
	defer b.kill9(t)

	gen := workload.New(7, time.Hour)
	gen.Start = time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC)
	gen.IDs = true
	ctx := context.Background()
	sent := 0
	for i := range 8 {
		batch := gen.Batch(50)
		to := a
		if i%2 == 1 {
			to = b
		}
		res, err := demo.PostBatch(ctx, http.DefaultClient, to.url, app, batch)
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		if res.Stored != len(batch) {
			t.Fatalf("batch %d: %d stored, want %d", i, res.Stored, len(batch))
		}
		sent += len(batch)
		if i == 0 {
			// A retry to the same collector is not stored again.
			if res, err := demo.PostBatch(ctx, http.DefaultClient, to.url, app, batch); err != nil || res.Stored != 0 {
				t.Fatalf("retried batch: %+v %v, want 0 stored", res, err)
			}
		}
	}

	for name, c := range map[string]*child{"first": a, "second": b} {
		t.Run(name, func(t *testing.T) {
			var st struct {
				Environments []struct {
					Metrics []struct {
						Values []string `json:"values"`
					} `json:"metrics"`
				} `json:"environments"`
			}
			getJSON(t, key, c.url+"/v1/o/acme/environments/prod/stats?"+url.Values{
				"select": {"sum(message_count)"}, "timeRange": {"11/01/2026 00:00~12/01/2026 00:00"}}.Encode(), &st)
			var metric float64
			if len(st.Environments) == 1 && len(st.Environments[0].Metrics) == 1 && len(st.Environments[0].Metrics[0].Values) == 1 {
				metric, _ = strconv.ParseFloat(st.Environments[0].Metrics[0].Values[0], 64)
			}
			var evs struct {
				Events []json.RawMessage `json:"events"`
			}
			getJSON(t, key, c.url+"/v1/o/acme/environments/prod/events?limit=1000", &evs)
			var usage struct {
				Total struct {
					Calls int64 `json:"calls"`
				} `json:"total"`
			}
			getJSON(t, key, c.url+"/v1/usage?"+url.Values{"org": {"acme"}, "env": {"prod"}, "period": {"2026-11"}, "group": {"user_id"}}.Encode(), &usage)
			got := fmt.Sprintf("sum(message_count) %v, events %d, usage calls %d", metric, len(evs.Events), usage.Total.Calls)
			want := fmt.Sprintf("sum(message_count) %v, events %d, usage calls %d", float64(sent), sent, sent)
			if got != want {
				t.Errorf("got %s; want %s", got, want)
			}
			var ready struct {
				Status string            `json:"status"`
				Checks map[string]string `json:"checks"`
			}
			getJSON(t, "", c.url+"/readyz", &ready)
			if ready.Status != "ready" || ready.Checks["store"] != "ok" || ready.Checks["redis"] != "ok" {
				t.Errorf("/readyz: %+v, want ready with store and redis ok", ready)
			}
			// /metrics serves, without the embedded store's series.
			resp, err := http.Get(c.url + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			m, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(m), "apimeter_metrics_api_requests_total") || strings.Contains(string(m), "apimeter_store_") {
				t.Errorf("/metrics: %s, want the Metrics API's series and no apimeter_store_* ones:\n%s", resp.Status, grepLines(string(m), "apimeter_"))
			}
		})
	}

	// A collector whose fingerprint key is not the others' is refused.
	code, _, errOut := runMain(t, "serve", "--listen", freeAddr(t), "--data", t.TempDir(), "--store", dsn, "--redis", rurl)
	if code != 1 || !strings.Contains(errOut, "fingerprint.key in --data is not the one the other processes on this store use") {
		t.Errorf("serve with another fingerprint key: exit %d, stderr:\n%s\nwant exit 1 naming fingerprint.key", code, errOut)
	}
}

// TestConsumeClickHouse: `apimeter consume --store clickhouse://...` reads
// the APIM policy's records from a kfake cluster and stores every call in
// ClickHouse, as its Metrics API shows by verb and status.
func TestConsumeClickHouse(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a consumer process; skipped with -short")
	}
	dsn := chtest.Shared(t).DSN(chtest.Database(t))
	rurl := redisURL(t)
	cluster, producer := policyTopic(t)
	const calls = 500
	want := feedPolicyCalls(t, producer, calls)
	data := t.TempDir()
	key := lastLine(t, "keys", "create", "--store", dsn, "--data", data, "--org", "acme")

	ctx := context.Background()
	st, err := clickhouse.Open(ctx, dsn, clickhouse.Options{NoDedupe: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stored := func() int {
		var n uint64
		st.DB().QueryRow("SELECT count() FROM events FINAL WHERE org = 'acme'").Scan(&n)
		return int(n)
	}

	addr := freeAddr(t)
	cmd := exec.Command(os.Args[0], "consume", "--brokers", strings.Join(cluster.ListenAddrs(), ","), "--topic", "apim", "--group", "ch",
		"--org", "acme", "--pair-ttl", "1s", "--session-timeout", "6s", "--store", dsn, "--redis", rurl, "--data", data,
		"--listen", addr, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "APIMETER_TEST_AS_MAIN=1")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// dead is closed when the process has exited, with its error in
	// waitErr.
	dead := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(dead) }()
	defer func() {
		cmd.Process.Kill() // nothing, when it has exited
		<-dead
	}()
	// Waiting is bounded by the run, not asserted on: a slow machine takes
	// longer, a stuck consumer fails.
	deadline := time.Now().Add(90 * time.Second)
	for stored() < calls {
		select {
		case <-dead:
			t.Fatalf("consume exited early: %v", waitErr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("consume stored %d of %d calls in 90 s", stored(), calls)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// ClickHouse fills the rollup tables' views after the INSERT's rows are
	// in the events table, so the count above can see a block that the
	// Metrics API (reading rollups) does not yet: wait for it too, bounded
	// by the same deadline.
	got := metricsByVerbStatusKey(t, "http://"+addr, key)
	for !maps.Equal(got, want) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		got = metricsByVerbStatusKey(t, "http://"+addr, key)
	}
	if !maps.Equal(got, want) {
		t.Errorf("Metrics API by verb and status:\n got %v\nwant %v", got, want)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-dead:
		if waitErr != nil {
			t.Errorf("consume after SIGTERM: %v, want exit status 0", waitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("consume did not exit within 30 s of SIGTERM")
	}
	if n := stored(); n != calls {
		t.Errorf("%d calls stored, want %d", n, calls)
	}
}

// TestReadyzClickHouseDown: /readyz answers 503 naming the store once the
// ClickHouse server is gone.
func TestReadyzClickHouseDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a clickhouse-server of its own; skipped with -short")
	}
	chtest.Shared(t) // skips (or fails) as the shared server would
	ctx := context.Background()
	srv, err := chtest.Start(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	f := instance.Config{Listen: "127.0.0.1:0", Data: t.TempDir(), BodyCap: 1024, MaxBodyBytes: 1 << 20, MaxBatchEvents: 100,
		DedupeHorizon: time.Hour, DailyInterval: -1, StoreConfig: instance.StoreConfig{Store: srv.DSN("apimeter")},
		IdentityConfig: instance.IdentityConfig{Redis: redisURL(t), RedisPrefix: "apimeter:"}}
	in, err := instance.Start(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	status := func() (int, string) {
		resp, err := http.Get(in.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := status(); code != 200 {
		t.Fatalf("/readyz with ClickHouse up: %d %s", code, body)
	}
	srv.Stop()
	if code, body := status(); code != 503 || !strings.Contains(body, `"store":"clickhouse server unreachable`) {
		t.Errorf("/readyz with ClickHouse stopped: %d %s; want 503 naming the store unreachable", code, body)
	}
}

// TestStoreURLErrors: a bad, incomplete or unreachable store URL stops each
// command that takes one with one line naming the URL, without its
// password, and what is wrong; never a panic.
func TestStoreURLErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there now
	down := "clickhouse://apimeter:s3cret@" + closed + "/apimeter"
	shown := "--store clickhouse://apimeter:xxxxx@" + closed + "/apimeter"
	data := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unreachable, apps create", []string{"apps", "create", "--data", data, "--org", "acme", "--store", down}, 1, shown + ": clickhouse server unreachable"},
		{"unreachable, apps list", []string{"apps", "list", "--data", data, "--store", down}, 1, shown + ": clickhouse server unreachable"},
		{"unreachable, keys create", []string{"keys", "create", "--data", data, "--org", "acme", "--store", down}, 1, shown + ": clickhouse server unreachable"},
		{"unreachable, keys list", []string{"keys", "list", "--data", data, "--store", down}, 1, shown + ": clickhouse server unreachable"},
		{"unreachable, keys revoke", []string{"keys", "revoke", "k1", "--data", data, "--store", down}, 1, shown + ": clickhouse server unreachable"},
		{"unreachable, serve", []string{"serve", "--listen", "127.0.0.1:0", "--data", data, "--store", down, "--redis", "redis://127.0.0.1:1/0"}, 1, shown + ": clickhouse server unreachable"},
		{"unreachable, consume", []string{"consume", "--brokers", "127.0.0.1:1", "--topic", "t", "--org", "acme", "--listen", "127.0.0.1:0", "--data", data, "--store", down, "--redis", "redis://127.0.0.1:1/0"}, 1, shown + ": clickhouse server unreachable"},
		{"no redis", []string{"serve", "--listen", "127.0.0.1:0", "--data", data, "--store", down}, 1, shown + ": a ClickHouse store is shared by several processes, so the alias table and usage counters must be too: give --redis"},
		{"no database", []string{"serve", "--store", "clickhouse://apimeter:s3cret@ch:9000"}, 2, "--store: store address clickhouse://apimeter:xxxxx@ch:9000: no database"},
		{"no host", []string{"keys", "create", "--org", "acme", "--store", "clickhouse:///apimeter"}, 2, "--store: store address clickhouse:///apimeter:"},
		{"other scheme", []string{"apps", "create", "--org", "acme", "--store", "mysql://root:s3cret@db/apimeter"}, 2, "--store mysql://root:xxxxx@db/apimeter: want duckdb (the embedded store in --data) or clickhouse://host:9000/db"},
		{"bad option", []string{"bench", "ingest", "--store", "clickhouse://u:s3cret@ch:9000/apimeter?dial_timeout=soon"}, 2, "--store: store address clickhouse://u:xxxxx@ch:9000/apimeter?dial_timeout=soon: not a valid URL"},
		{"with --collector", []string{"consume", "--brokers", "127.0.0.1:1", "--topic", "t", "--app-id", "x", "--collector", "http://127.0.0.1:1", "--store", down}, 1, "--store and --collector exclude each other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runMain(t, tc.args...)
			lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
			if code != tc.code || !strings.Contains(lines[0], tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and a first line saying %q", code, errOut, tc.code, tc.want)
			}
			if len(lines) > 2 || (tc.code == 1 && len(lines) != 1) {
				t.Errorf("stderr has %d lines, want the error alone:\n%s", len(lines), errOut)
			}
			if strings.Contains(errOut, "s3cret") || strings.Contains(errOut, "panic") {
				t.Errorf("stderr shows the password or a panic:\n%s", errOut)
			}
		})
	}
}
