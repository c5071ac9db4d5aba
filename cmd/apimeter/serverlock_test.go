package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecondServeNamesTheServingPID: a second serve on a data directory
// in use says which process serves it, not DuckDB's lock error.
func TestSecondServeNamesTheServingPID(t *testing.T) {
	data := t.TempDir()
	first := startChild(t, data)
	defer first.kill9(t)
	code, _, stderr := runMain(t, "serve", "--listen", freeAddr(t), "--data", data)
	want := fmt.Sprintf("another apimeter (PID %d) is serving %s", first.cmd.Process.Pid, data)
	if code == 0 || !strings.Contains(stderr, want) {
		t.Errorf("second serve: exit %d, stderr:\n%s\nwant %q", code, stderr, want)
	}
}

// TestServeOnTakenPortLeavesNoDataDir: serve on a port in use fails
// before it writes anything, so a new data directory is not left behind.
func TestServeOnTakenPortLeavesNoDataDir(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	data := filepath.Join(t.TempDir(), "new-data")
	code, _, stderr := runMain(t, "serve", "--listen", ln.Addr().String(), "--data", data)
	if code == 0 || !strings.Contains(stderr, "address already in use") {
		t.Errorf("serve on a taken port: exit %d, stderr:\n%s", code, stderr)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		entries, _ := os.ReadDir(data)
		t.Errorf("serve on a taken port left the data directory %s (%v): %v", data, err, entries)
	}
}
