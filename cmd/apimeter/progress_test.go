package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// runWithStderr runs apimeter with args, its stderr a terminal (a
// pseudo-terminal) or a pipe, until it ends or, when readyLine is not
// empty, until it prints a stdout line holding readyLine (then it is
// interrupted). It returns what went to stderr.
func runWithStderr(t *testing.T, terminal bool, readyLine string, args ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "APIMETER_TEST_AS_MAIN=1")
	var stderr bytes.Buffer
	copied := make(chan struct{})
	if terminal {
		ptmx, tty, err := pty.Open()
		if err != nil {
			t.Skipf("no pseudo-terminal: %v", err)
		}
		defer ptmx.Close()
		cmd.Stderr = tty
		go func() {
			io.Copy(&stderr, ptmx) // until EIO: the child and we closed the terminal side
			close(copied)
		}()
		defer tty.Close()
	} else {
		cmd.Stderr = &stderr
		close(copied)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for readyLine != "" && sc.Scan() {
		if strings.Contains(sc.Text(), readyLine) {
			cmd.Process.Signal(syscall.SIGINT)
			break
		}
	}
	io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("apimeter %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	if terminal {
		cmd.Stderr.(*os.File).Close()
		select {
		case <-copied:
		case <-time.After(10 * time.Second):
			t.Fatal("the terminal's output did not end")
		}
	}
	return stderr.String()
}

// TestProgressOnlyOnTerminal: `demo --backfill` and `bench dataset` show a
// progress line (done / total, rate, time) when stderr is a terminal, and
// nothing of it when stderr is a pipe, as in CI or a log file.
func TestProgressOnlyOnTerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes; skipped with -short")
	}
	for _, tc := range []struct {
		name  string
		ready string
		args  func() []string
		line  string
	}{
		{"demo", "Ctrl-C stops the demo", func() []string {
			return []string{"demo", "--listen", freeAddr(t), "--api-listen", freeAddr(t), "--backfill", "3000", "--rate", "1"}
		}, "backfill: 3000 / 3000 calls (100.0 %), "},
		{"bench dataset", "", func() []string {
			return []string{"bench", "dataset", "--data", filepath.Join(t.TempDir(), "d"), "--events", "20000", "--batch", "2000", "--users", "50", "--companies", "5", "--days", "2"}
		}, "write: 20000 / 20000 events (100.0 %), "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			onTerm := runWithStderr(t, true, tc.ready, tc.args()...)
			if !strings.Contains(onTerm, tc.line) || !strings.Contains(onTerm, "/s, in ") {
				t.Errorf("stderr on a terminal:\n%q\nwant a progress line %q with its rate and time", onTerm, tc.line)
			}
			onPipe := runWithStderr(t, false, tc.ready, tc.args()...)
			if strings.Contains(onPipe, "\r") || strings.Contains(onPipe, " / ") || strings.Contains(onPipe, "\x1b[") {
				t.Errorf("stderr on a pipe:\n%q\nwant no progress line", onPipe)
			}
		})
	}
}
