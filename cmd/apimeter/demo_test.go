package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemoCommand runs `apimeter demo` as a process: it prints where its
// fresh data directory is, the dashboard's URL and three Metrics API calls
// that answer with the guide's users, and on Ctrl-C it stops within a few
// seconds and removes its directory.
func TestDemoCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes; skipped with -short")
	}
	cmd := exec.Command(os.Args[0], "demo", "--listen", freeAddr(t), "--api-listen", freeAddr(t), "--backfill", "2000", "--rate", "20")
	cmd.Env = append(os.Environ(), "APIMETER_TEST_AS_MAIN=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var out []string
	deadline := time.After(2 * time.Minute)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("demo ended early:\n%s", strings.Join(out, "\n"))
			}
			out = append(out, l)
			if strings.Contains(l, "Ctrl-C stops the demo") {
				break wait
			}
		case <-deadline:
			t.Fatalf("demo not ready after 2 minutes:\n%s", strings.Join(out, "\n"))
		}
	}
	text := strings.Join(out, "\n")
	data := regexp.MustCompile(`data in (\S+)`).FindStringSubmatch(text)
	if data == nil {
		t.Fatalf("demo does not say where its data is:\n%s", text)
	}
	if _, err := os.Stat(data[1]); err != nil {
		t.Fatalf("data directory %s: %v", data[1], err)
	}
	if !regexp.MustCompile(`http://127\.0\.0\.1:\d+/(ui/|signin\?token=)`).MatchString(text) {
		t.Errorf("demo prints no dashboard URL:\n%s", text)
	}
	curls := regexp.MustCompile(`curl -s (?:-H "[^"]*" )?'([^']+/stats/[^']+)'`).FindAllStringSubmatch(text, -1)
	if len(curls) != 3 {
		t.Fatalf("want three example Metrics API calls, got %d:\n%s", len(curls), text)
	}
	key := ""
	if m := regexp.MustCompile(`APIMETER_KEY=(\S+)`).FindStringSubmatch(text); m != nil {
		key = m[1]
	}
	req, _ := http.NewRequest(http.MethodGet, curls[0][1], nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var answer struct {
		Environments []struct {
			Dimensions []struct{ Name string } `json:"dimensions"`
		} `json:"environments"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(b, &answer) != nil || len(answer.Environments) != 1 {
		t.Fatalf("first example call: %d %s", resp.StatusCode, b)
	}
	users := map[string]bool{}
	for _, d := range answer.Environments[0].Dimensions {
		users[d.Name] = true
	}
	for _, u := range []string{"513", "1234", "2560"} {
		if !users[u] {
			t.Errorf("calls by user this month lack user %s: %s", u, b)
		}
	}

	began := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() {
		for range lines {
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("demo exit after Ctrl-C: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("demo still running 10 s after Ctrl-C")
	}
	t.Logf("demo stopped %v after SIGINT", time.Since(began).Round(time.Millisecond))
	if _, err := os.Stat(data[1]); !os.IsNotExist(err) {
		t.Errorf("the demo's fresh data directory %s is still there after exit (err %v)", data[1], err)
	}
}
