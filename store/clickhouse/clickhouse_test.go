package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/stats"
)

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	_, err = Open(context.Background(), "clickhouse://"+addr+"/db", Options{DialTimeout: time.Second})
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("open on a closed port: err %v, want ErrUnreachable", err)
	}
	for _, bad := range []string{"http://127.0.0.1:9000/db", "clickhouse:///db", "127.0.0.1:9000"} {
		if _, err := Open(context.Background(), bad, Options{}); err == nil {
			t.Errorf("Open(%q): no error", bad)
		}
	}
}

// TestRedeliveryAcrossProcesses: two collectors (two stores on one
// database, each with its own dedupe set) both store a redelivered batch;
// the Metrics API and the event stream still count each event once.
func TestRedeliveryAcrossProcesses(t *testing.T) {
	ctx := context.Background()
	a, dsn := openTest(t, Options{})
	defer a.Close()
	b, err := Open(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	var evs []apimeter.Event
	for i := range 50 {
		evs = append(evs, apimeter.Event{ID: fmt.Sprint("r", i), Org: "o", Env: "e", APIName: "api", Method: "GET", Path: "/x",
			RequestTime: at.Add(time.Duration(i) * time.Second), Status: 200, LatencyMs: float64(i), Weight: 2, RequestSize: -1, ResponseSize: -1})
	}
	for _, st := range []*Store{a, b} {
		res, err := st.Append(ctx, evs)
		if err != nil || len(res.Stored) != len(evs) {
			t.Fatalf("append: %d stored, %v", len(res.Stored), err)
		}
	}
	got, err := a.Events(ctx, apimeter.EventFilter{Org: "o", Env: "e", Limit: 1000})
	if err != nil || len(got) != 50 {
		t.Fatalf("event stream after a redelivery: %d events, %v; want 50", len(got), err)
	}
	q, _ := url.ParseQuery("select=sum(message_count),p50(total_response_time)&timeRange=01/05/2026%2000:00~01/06/2026%2000:00")
	p, err := stats.Parse("o", "e", "", q)
	if err != nil {
		t.Fatal(err)
	}
	res, err := stats.Run(ctx, a.DB(), stats.ClickHouse{}, p)
	if err != nil {
		t.Fatal(err)
	}
	if v := res.Rows[0].Values; *v[0] != 100 || *v[1] != 24 {
		t.Fatalf("after a redelivery: calls %v, p50 %v; want 100 and 24", *v[0], *v[1])
	}
	// Without FINAL the unmerged copies count twice: FINAL is what makes it exact.
	res, err = stats.Run(ctx, a.DB(), stats.ClickHouse{NoFinal: true}, p)
	if err != nil {
		t.Fatal(err)
	}
	if v := res.Rows[0].Values; *v[0] != 200 {
		t.Logf("without FINAL: %v calls (parts already merged)", *v[0])
	}
}

func TestRetentionDropsWholeMonths(t *testing.T) {
	ctx := context.Background()
	st, _ := openTest(t, Options{Retention: 60 * 24 * time.Hour, RetentionInterval: time.Hour})
	defer st.Close()
	now := time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC) // cutoff 2026-04-16
	var evs []apimeter.Event
	for i, m := range []time.Month{2, 3, 4, 5, 6} {
		evs = append(evs, apimeter.Event{ID: fmt.Sprint("m", i), Org: "o", Env: "e", RequestTime: time.Date(2026, m, 10, 0, 0, 0, 0, time.UTC), Weight: 1, RequestSize: -1, ResponseSize: -1})
	}
	if _, err := st.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	dropped, err := st.DropExpired(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(dropped) != "[202602 202603]" {
		t.Errorf("dropped %v, want [202602 202603] (April ends after the cutoff)", dropped)
	}
	got, err := st.Events(ctx, apimeter.EventFilter{Org: "o", Env: "e"})
	if err != nil || len(got) != 3 {
		t.Errorf("events left: %d, %v; want 3", len(got), err)
	}
}

func TestMigrationsRecorded(t *testing.T) {
	st, dsn := openTest(t, Options{})
	st.Close()
	st, err := Open(context.Background(), dsn, Options{}) // a second start applies nothing
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var n, v uint64
	if err := st.Conn().QueryRow(context.Background(), "SELECT count(), toUInt64(max(version)) FROM schema_version").Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if n != uint64(SchemaVersion()) || v != uint64(SchemaVersion()) {
		t.Fatalf("schema_version: %d rows, max %d; want %d each", n, v, SchemaVersion())
	}
}

func TestParseDSN(t *testing.T) {
	for _, tc := range []struct {
		dsn, addr, db, err string
	}{
		{dsn: "clickhouse://ch:9000/apimeter", addr: "ch:9000", db: "apimeter"},
		{dsn: "clickhouse://ch/apimeter", addr: "ch:9000", db: "apimeter"},
		{dsn: "clickhouse://u:s3cret@ch:9000/apimeter?dial_timeout=2s", addr: "ch:9000", db: "apimeter"},
		{dsn: "clickhouse://ch:9000?database=apimeter", addr: "ch:9000", db: "apimeter"},
		{dsn: "clickhouse://u:s3cret@ch:9000", err: "store address clickhouse://u:xxxxx@ch:9000: no database"},
		{dsn: "clickhouse://ch:9000/", err: "no database"},
		{dsn: "clickhouse:///apimeter", err: "store address clickhouse:///apimeter: "},
		{dsn: "http://u:s3cret@ch:8123/apimeter", err: "store address http://u:xxxxx@ch:8123/apimeter: want clickhouse://"},
		{dsn: "clickhouse://u:s3cret@ch:9000/apimeter?dial_timeout=soon", err: "store address clickhouse://u:xxxxx@ch:9000/apimeter?dial_timeout=soon: not a valid URL"},
	} {
		o, err := ParseDSN(tc.dsn)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseDSN(%q): %v, want an error saying %q", tc.dsn, err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("ParseDSN(%q): the error shows the password: %v", tc.dsn, err)
			}
		case err != nil:
			t.Errorf("ParseDSN(%q): %v", tc.dsn, err)
		case o.Addr[0] != tc.addr || o.Auth.Database != tc.db:
			t.Errorf("ParseDSN(%q): address %s, database %s; want %s, %s", tc.dsn, o.Addr[0], o.Auth.Database, tc.addr, tc.db)
		}
	}
	for dsn, want := range map[string]string{
		"clickhouse://u:s3cret@ch:9000/db":        "clickhouse://u:xxxxx@ch:9000/db",
		"clickhouse://ch:9000/db?password=s3cret": "clickhouse://ch:9000/db?password=xxxxx",
		"clickhouse://u:s3%zz@ch:9000/db":         "clickhouse://xxxxx@ch:9000/db",
		"clickhouse://ch:9000/db":                 "clickhouse://ch:9000/db",
		"duckdb":                                  "duckdb",
	} {
		if got := Redact(dsn); got != want {
			t.Errorf("Redact(%q) = %q, want %q", dsn, got, want)
		}
	}
}
