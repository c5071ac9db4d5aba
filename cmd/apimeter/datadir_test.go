package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestListOnMissingDataDirFails: apps list and keys list on a mistyped
// --data say the directory does not exist and exit non-zero, instead of
// listing nothing as if it were empty; they create nothing.
func TestListOnMissingDataDirFails(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "apimeter-dta")
	for _, args := range [][]string{{"apps", "list"}, {"keys", "list"}, {"keys", "revoke", "k_x"}} {
		code, stdout, stderr := runMain(t, append(args, "--data", missing)...)
		if code == 0 || !strings.Contains(stderr, missing) || !strings.Contains(stderr, "does not exist") {
			t.Errorf("apimeter %v on a missing data directory: exit %d, stdout %q, stderr %q; want an error naming it", args, code, stdout, stderr)
		}
		if _, err := os.Stat(missing); err == nil {
			t.Fatalf("apimeter %v created the missing data directory", args)
		}
	}
}

// TestCreateMakesPrivateDataDir: apps create and keys create make a new
// data directory readable by its owner only (0700), as the README says.
func TestCreateMakesPrivateDataDir(t *testing.T) {
	for _, args := range [][]string{{"apps", "create", "--org", "acme"}, {"keys", "create", "--org", "acme"}} {
		dir := filepath.Join(t.TempDir(), "new", "data")
		if code, _, stderr := runMain(t, append(args, "--data", dir)...); code != 0 {
			t.Fatalf("apimeter %v: exit %d: %s", args, code, stderr)
		}
		st, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o700 {
			t.Errorf("apimeter %v made the data directory %v, want 0700", args, st.Mode().Perm())
		}
	}
}
