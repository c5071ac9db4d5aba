package progress

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
)

func TestLine(t *testing.T) {
	b := &Bar{label: "backfill", unit: "calls", total: 300000}
	for _, tc := range []struct {
		name    string
		done    int64
		elapsed time.Duration
		want    string
	}{
		{"nothing yet", 0, 0, "backfill: 0 / 300000 calls (0.0 %)"},
		{"a quarter", 75000, 3 * time.Second, "backfill: 75000 / 300000 calls (25.0 %), 25000 calls/s, 9s left"},
		{"done", 300000, 12340 * time.Millisecond, "backfill: 300000 / 300000 calls (100.0 %), 24311 calls/s, in 12.3s"},
	} {
		if got := b.Line(tc.done, tc.elapsed); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestSilentUnlessTerminal: on a pipe or a file Start reports nothing (a
// nil Bar, whose methods do nothing); on a terminal it ends with the line
// of the whole work.
func TestSilentUnlessTerminal(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(t.TempDir() + "/log")
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []*os.File{w, f} {
		b := Start(out, "work", "items", 10)
		b.Add(10)
		b.Finish()
		if b != nil {
			t.Errorf("Start on %s: a report, want none (not a terminal)", out.Name())
		}
	}
	w.Close()
	f.Close()
	if b, _ := io.ReadAll(r); len(b) != 0 {
		t.Errorf("the pipe got %q, want nothing", b)
	}
	if b, _ := os.ReadFile(f.Name()); len(b) != 0 {
		t.Errorf("the file got %q, want nothing", b)
	}

	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	b := Start(tty, "work", "items", 10)
	if b == nil {
		t.Fatal("Start on a terminal: no report")
	}
	b.Add(4)
	b.Add(6)
	b.Finish()
	tty.Close()
	got, _ := io.ReadAll(ptmx) // ends with EIO once the terminal side is closed
	if !strings.Contains(string(got), "work: 10 / 10 items (100.0 %)") || !strings.HasSuffix(strings.TrimRight(string(got), "\r\n"), "\x1b[K") {
		t.Errorf("the terminal got %q, want the line of 10 / 10 items", got)
	}
}
