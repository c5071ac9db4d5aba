package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/instance"
)

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// repeat writes prefix, n copies of unit joined by commas, and suffix.
func repeat(prefix, unit, suffix string, size int) []byte {
	var b bytes.Buffer
	b.Grow(size)
	b.WriteString(prefix)
	for k := 0; b.Len()+len(unit)+len(suffix)+1 < size; k++ {
		if k > 0 {
			b.WriteByte(',')
		}
		b.WriteString(unit)
	}
	b.WriteString(suffix)
	return b.Bytes()
}

// procStatus reads a field of /proc/<pid>/status in bytes (VmRSS, VmHWM).
func procStatus(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// TestSmallRequestPeakMemory runs `apimeter serve` with its default
// limits and sends it requests of at most 64 KiB (gzip) that expand to
// what costs the most memory per byte of JSON, one after the other, then
// reads the process's peak RSS (VmHWM): it must stay below 512 MiB. A
// watchdog kills the server when its RSS passes 1 GiB, so that a
// regression fails the test rather than the machine (before the fix the
// first body took it to ~17 GB).
func TestSmallRequestPeakMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process; skipped with -short")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc/<pid>/status to read the peak RSS from")
	}
	const limit, kill = 512 << 20, 1 << 30
	const body = 32 << 20 // --max-body-bytes' default: the most a gzip body may expand to
	data := t.TempDir()
	a, err := apps.Create(data, "mem", "prod")
	if err != nil {
		t.Fatal(err)
	}
	c := startChild(t, data)
	defer c.kill9(t)
	pid := c.cmd.Process.Pid
	var killedAt atomic.Int64
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if rss, err := procStatus(pid, "VmRSS"); err == nil && rss > kill {
				killedAt.Store(rss)
				c.cmd.Process.Kill()
				return
			}
		}
	}()
	ev := `{"request":{"time":"2026-11-02T09:00:00Z","uri":"/a","verb":"GET","headers":{%s}},"response":{"status":200}}`
	headers := strings.TrimSuffix(strings.Repeat(`"":1,`, 999), ",")
	event2k := strings.Replace(fmt.Sprintf(ev, `"User-Agent":"x"`), `"verb":"GET"`, `"verb":"GET","body":{"t":"`+strings.Repeat("abcdefgh", 325)+`"}`, 1)
	cases := []struct {
		name, path string
		json       []byte
	}{
		{"millions of {}", "/v1/events/batch", repeat("[", "{}", "]", body)},
		{"millions of {} to the slow decoder", "/v1/events/batch", repeat("[", `{"Request":{}}`, "]", body)},
		{"999 headers per event", "/v1/events/batch", repeat("[", fmt.Sprintf(ev, headers), "]", body)},
		{"one header of many array elements", "/v1/events/batch", []byte("[" + fmt.Sprintf(ev, `"a":[`+string(repeat("", "1", "", body-200))+`]`) + "]")},
		{"a 32 MiB body", "/v1/events", []byte(strings.Replace(fmt.Sprintf(ev, ""), `"verb":"GET"`, `"verb":"GET","body":"`+strings.Repeat("a", body-200)+`"`, 1))},
		{"a 32 MiB base64 body", "/v1/events", []byte(strings.Replace(fmt.Sprintf(ev, ""), `"verb":"GET"`, `"verb":"GET","transfer_encoding":"base64","body":"`+strings.Repeat("QUFB", (body-200)/4)+`"`, 1))},
		{"a 32 MiB metadata", "/v1/events", []byte(strings.Replace(fmt.Sprintf(ev, ""), `{"request"`, `{"metadata":{"a":[`+string(repeat("", "1", "", body-200))+`]},"request"`, 1))},
		{"10,000 events with 2.6 KiB bodies", "/v1/events/batch", []byte("[" + strings.Repeat(event2k+",", 9999) + event2k + "]")},
		{"users: millions of {}", "/v1/users/batch", repeat("[", "{}", "]", body)},
		{"a user with millions of keys", "/v1/users", repeat("{", `"a":1`, "}", body)},
	}
	for _, cs := range cases {
		gz := gzipped(cs.json)
		if len(gz) > 64<<10 {
			t.Fatalf("%s: gzip body of %d KiB, want at most 64 KiB", cs.name, len(gz)>>10)
		}
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, c.url+cs.path, bytes.NewReader(gz))
		req.Header.Set("X-Moesif-Application-Id", a.ID)
		req.Header.Set("Content-Encoding", "gzip")
		resp, err := http.DefaultClient.Do(req)
		if killedAt.Load() > 0 {
			t.Fatalf("%s (%d KiB gzip): the server's RSS passed %d MiB; killed", cs.name, len(gz)>>10, killedAt.Load()>>20)
		}
		if err != nil {
			t.Fatalf("%s: %v", cs.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Errorf("%s: answered %d %s", cs.name, resp.StatusCode, b)
		}
		hwm, err := procStatus(pid, "VmHWM")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-36s %5d KiB gzip -> %3d: peak RSS so far %d MiB", cs.name, len(gz)>>10, resp.StatusCode, hwm>>20)
		if hwm > limit {
			t.Errorf("%s: peak RSS %d MiB, want below %d MiB", cs.name, hwm>>20, limit>>20)
		}
	}
}

// TestServerAnswersJSON431: a header larger than net/http accepts is
// answered by net/http itself, before any handler; the answer must still
// be apimeter's JSON error.
func TestServerAnswersJSON431(t *testing.T) {
	ctx := context.Background()
	f := instance.Config{Listen: "127.0.0.1:0", Data: filepath.Join(t.TempDir(), "data"), BodyCap: 1024, MaxBodyBytes: 1 << 20, MaxBatchEvents: 100, DailyInterval: -1}
	in, err := instance.Start(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	conn, err := net.Dial("tcp", in.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	go fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 2<<20))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	var out struct {
		Error struct{ Code, Message string }
	}
	if resp.StatusCode != 431 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") ||
		json.Unmarshal(b, &out) != nil || out.Error.Code != "header_too_large" {
		t.Errorf("answer to a 2 MiB header: %d %q %q; want 431 application/json with error.code header_too_large",
			resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
}

// TestDataFilesPrivate: every file of the data directory (events.duckdb,
// its write-ahead log, apps.json) is readable by its owner only, and the
// directory too.
func TestDataFilesPrivate(t *testing.T) {
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	if _, err := apps.Create(data, "acme", "prod"); err != nil {
		t.Fatal(err)
	}
	f := instance.Config{Listen: "127.0.0.1:0", Data: data, BodyCap: 1024, MaxBodyBytes: 1 << 20, MaxBatchEvents: 100, DailyInterval: -1}
	in, err := instance.Start(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	a := in.Apps.List()[0]
	ev := `[{"request":{"time":"2026-11-02T09:00:00Z","uri":"/a","verb":"GET"},"response":{"status":200}}]`
	req, _ := http.NewRequest(http.MethodPost, in.URL+"/v1/events/batch", strings.NewReader(ev))
	req.Header.Set("X-Moesif-Application-Id", a.ID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST: %v %v", resp, err)
	}
	resp.Body.Close()
	check := func() {
		n := 0
		filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return nil // removed meanwhile
			}
			n++
			if info.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s has mode %v, want no access for group and others", path, info.Mode().Perm())
			}
			return nil
		})
		if n < 3 {
			t.Errorf("only %d entries in the data directory", n)
		}
	}
	check() // while serving: the write-ahead log is there
	in.Close()
	check()
}
