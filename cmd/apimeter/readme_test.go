package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// quickStart returns the shell block under README.md's "Quick start".
func quickStart(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n## Quick start\n")
	if !ok {
		t.Fatal("README.md has no Quick start section")
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	if !ok {
		t.Fatal("README.md's Quick start has no sh block")
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("README.md's Quick start block is not closed")
	}
	return block
}

// TestReadmeQuickStart runs README.md's quick start block as one script,
// as a new user pastes it: in a fresh directory, with bash -e so that a
// failed command (a curl that finds no server) fails the test. Two
// changes: the port is a free one, and the build line is not run, the
// ./apimeter it would build being this test binary acting as the command.
func TestReadmeQuickStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process; skipped with -short")
	}
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed; the quick start block needs it", tool)
		}
	}
	block := quickStart(t)
	const build = "go build -o apimeter ./cmd/apimeter\n"
	if !strings.HasPrefix(block, build) {
		t.Fatalf("the quick start block does not start with %q:\n%s", build, block)
	}
	block = strings.TrimPrefix(block, build)
	addr := freeAddr(t)
	block = strings.ReplaceAll(block, "127.0.0.1:7070", addr)

	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	wrapper := fmt.Sprintf("#!/bin/sh\nAPIMETER_TEST_AS_MAIN=1 exec %q \"$@\"\n", self)
	if err := os.WriteFile(filepath.Join(dir, "apimeter"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	// The server the block starts in the background is stopped when the
	// script ends, however it ends.
	script := "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n" + block
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "APIMETER_LISTEN="+addr, "APIMETER_LOG_LEVEL=warn")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // anything left behind
	if err != nil {
		t.Fatalf("the quick start block failed: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		`{"duplicates":0,"stored":1}`,                     // the collector, as the block's comment says
		`"uri":"https://api.acme.example/accounts/abcdef`, // the event stream
		`"name":"513"`,         // the Metrics API's user_id dimension
		`"id":"513","calls":1`, // usage for the billing period
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the quick start printed no %s:\n%s\nstderr:\n%s", want, out, stderr.String())
		}
	}
}
