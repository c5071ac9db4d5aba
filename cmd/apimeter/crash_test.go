package main

import (
	"context"
	"database/sql"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	duckdbdrv "github.com/duckdb/duckdb-go/v2"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/demo"
	"github.com/apimeter/apimeter/instance"
	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
	"github.com/apimeter/apimeter/workload"
)

// TestMain lets the test binary act as the apimeter command, so the crash
// test can run the real server as a child process and kill it.
func TestMain(m *testing.M) {
	if os.Getenv("APIMETER_TEST_AS_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	code := m.Run()
	chtest.StopShared()
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type child struct {
	cmd *exec.Cmd
	url string
}

// startChild runs `apimeter serve` in a child process and waits until it
// answers.
func startChild(t *testing.T, data string, flags ...string) *child {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--listen", addr, "--data", data, "--log-level", "warn"}, flags...)...)
	cmd.Env = append(os.Environ(), "APIMETER_TEST_AS_MAIN=1")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, url: "http://" + addr}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(c.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			return c
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	t.Fatal("server did not start within 60s")
	return nil
}

func (c *child) kill9(t *testing.T) {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.cmd.Wait()
}

// TestAcknowledgedEventsSurviveKill9 sends batches from several clients,
// kills the server with SIGKILL right after an acknowledgement, restarts it
// (three times), resends the batch that was in flight, and checks that
// every acknowledged event is stored exactly once.
func TestAcknowledgedEventsSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes; skipped with -short")
	}
	data := t.TempDir()
	a, err := apps.Create(data, "crash", "prod")
	if err != nil {
		t.Fatal(err)
	}
	gen := workload.New(7, 24*time.Hour)
	gen.IDs = true

	acked := map[string]bool{}
	var mu sync.Mutex
	var inflight [][]moesif.Event
	for round := 0; round < 3; round++ {
		c := startChild(t, data)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		ackedThisRound := make(chan struct{}, 64)
		for w := 0; w < 3; w++ {
			batches := make([][]moesif.Event, 20)
			for i := range batches {
				batches[i] = gen.Batch(50)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, b := range batches {
					res, err := demo.PostBatch(ctx, http.DefaultClient, c.url, a.ID, b)
					if err != nil {
						// The server died under this batch: it may or may
						// not be stored; it is sent again after restart.
						mu.Lock()
						inflight = append(inflight, b)
						mu.Unlock()
						return
					}
					if res.Stored+res.Duplicates != len(b) {
						t.Errorf("batch of %d: stored %d + duplicates %d", len(b), res.Stored, res.Duplicates)
					}
					mu.Lock()
					for _, ev := range b {
						acked[ev.EventID] = true
					}
					mu.Unlock()
					select {
					case ackedThisRound <- struct{}{}:
					default:
					}
				}
			}()
		}
		// Kill right after the fifth acknowledgement of the round.
		for i := 0; i < 5; i++ {
			<-ackedThisRound
		}
		c.kill9(t)
		cancel()
		wg.Wait()
	}

	// Restart, send the in-flight batches again (a retrying sender), stop
	// cleanly and count.
	c := startChild(t, data)
	for _, b := range inflight {
		if _, err := demo.PostBatch(context.Background(), http.DefaultClient, c.url, a.ID, b); err != nil {
			t.Fatalf("resend after restart: %v", err)
		}
		for _, ev := range b {
			acked[ev.EventID] = true
		}
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	c.cmd.Wait()

	db := openDB(t, filepath.Join(data, instance.DBFile))
	counts := map[string]int{}
	rows, err := db.Query(`SELECT id, count(*) FROM events GROUP BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var n int
		rows.Scan(&id, &n)
		counts[id] = n
	}
	rows.Close()
	if len(acked) < 5*3*50 {
		t.Fatalf("only %d events acknowledged; the test did not exercise the crash path", len(acked))
	}
	missing, twice := 0, 0
	for id := range acked {
		switch counts[id] {
		case 0:
			missing++
		case 1:
		default:
			twice++
		}
	}
	for id, n := range counts {
		if n > 1 && !acked[id] {
			twice++
		}
	}
	if missing > 0 || twice > 0 {
		t.Fatalf("of %d acknowledged events, %d missing and %d stored more than once after kill -9", len(acked), missing, twice)
	}
	t.Logf("%d acknowledged events, each stored once, across 3 kill -9 restarts and %d resent batches", len(acked), len(inflight))
}

func openDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	connector, err := duckdbdrv.NewConnector(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector)
	t.Cleanup(func() { db.Close() })
	return db
}

// TestAppsCreatePrintsIDOnLastLine checks the CLI contract that scripts
// rely on, with and without a server on the same data directory.
func TestAppsCreatePrintsIDOnLastLine(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes; skipped with -short")
	}
	data := t.TempDir()
	run := func() string {
		t.Helper()
		cmd := exec.Command(os.Args[0], "apps", "create", "--data", data, "--org", "acme", "--env", "prod")
		cmd.Env = append(os.Environ(), "APIMETER_TEST_AS_MAIN=1")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("apps create: %v", err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return lines[len(lines)-1]
	}
	first := run()
	c := startChild(t, data)
	defer c.kill9(t)
	second := run()
	for _, id := range []string{first, second} {
		req, _ := http.NewRequest(http.MethodGet, c.url+"/v1/config", nil)
		req.Header.Set("X-Moesif-Application-Id", id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("id %q from apps create: server answered %d, want 200", id, resp.StatusCode)
		}
	}
}
