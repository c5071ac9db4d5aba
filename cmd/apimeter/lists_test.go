package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestListCommandsJSON: every list command takes --json and prints one
// JSON array of what it lists (an empty list is [], not null or nothing),
// both those that read the data directory and those that ask a running
// server.
func TestListCommandsJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process; skipped with -short")
	}
	data := t.TempDir()
	app := lastLine(t, "apps", "create", "--data", data, "--org", "acme")
	admin := lastLine(t, "keys", "create", "--data", data, "--org", "acme", "--scope", "admin", "--name", "ops")
	lastLine(t, "portal", "token", "create", "--data", data, "--org", "acme", "--user-id", "u1", "--name", "u1-page")
	cfg := filepath.Join(data, "alerts.yaml")
	os.WriteFile(cfg, []byte("rules:\n  - {id: quiet, org: acme, env: prod, kind: absence, window: 1h}\n"), 0o600)
	c := startChild(t, data, "--alerts-config", cfg)
	defer c.kill9(t)
	sendJSON(t, http.MethodPost, admin, c.url+"/api/v1/meters",
		map[string]any{"slug": "calls", "eventType": "api-call", "aggregation": "COUNT"}, http.StatusCreated, nil)
	server := []string{"--server", c.url, "--org", "acme", "--apimeter-key", admin}
	runCLI(t, append([]string{"aliases", "put", "--key", "sk_live_1", "--user", "u1"}, server...)...)

	for _, tc := range []struct {
		args  []string
		field string // a field of every element
		want  string // its value in one element
	}{
		{[]string{"apps", "list", "--data", data}, "id", app},
		{[]string{"keys", "list", "--data", data}, "name", "ops"},
		{[]string{"portal", "token", "list", "--data", data}, "name", "u1-page"},
		{append([]string{"aliases", "list", "--user", "u1"}, server...), "user_id", "u1"},
		{append([]string{"meters", "list"}, server...), "slug", "calls"},
		{append([]string{"alerts", "list"}, server...), "id", "quiet"},
		// Nothing to list: [].
		{[]string{"keys", "list", "--data", data, "--org", "nobody"}, "", ""},
		{append([]string{"aliases", "list", "--user", "nobody"}, server...), "", ""},
	} {
		out := runCLI(t, append(tc.args, "--json")...)
		var list []map[string]any
		if err := json.Unmarshal([]byte(out), &list); err != nil || list == nil {
			t.Errorf("apimeter %s --json printed %q: want a JSON array (%v)", strings.Join(tc.args[:2], " "), out, err)
			continue
		}
		if tc.field == "" {
			if len(list) != 0 {
				t.Errorf("apimeter %s --json: %v, want []", strings.Join(tc.args[:2], " "), list)
			}
			continue
		}
		var got []string
		for _, e := range list {
			v, _ := e[tc.field].(string)
			got = append(got, v)
		}
		if !slices.Contains(got, tc.want) {
			t.Errorf("apimeter %s --json: %s of the elements %q, want one %q\n%s", strings.Join(tc.args[:2], " "), tc.field, got, tc.want, out)
		}
	}
}

// TestHelpCommand: `apimeter help serve` prints serve's help, as
// `apimeter serve --help` does, and exits 0.
func TestHelpCommand(t *testing.T) {
	code, out, errOut := runMain(t, "help", "keys", "create")
	_, want, _ := runMain(t, "keys", "create", "--help")
	if code != 0 || out != want || !strings.HasPrefix(out, "Usage: apimeter keys create") {
		t.Fatalf("apimeter help keys create: exit %d, stdout:\n%s\nstderr:\n%s\nwant exit 0 and the help of keys create:\n%s", code, out, errOut, want)
	}
	if code, _, errOut := runMain(t, "help", "frobnicate"); code == 0 || !strings.Contains(errOut, "frobnicate") {
		t.Errorf("apimeter help frobnicate: exit %d, stderr %q; want a failure naming it", code, errOut)
	}
}

// TestCompletionBash: bash loads `apimeter completion bash`, `complete -p
// apimeter` shows it, and what bash then runs to complete lists the
// subcommands and a command's flags.
func TestCompletionBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	// An apimeter on PATH, as an installed one would be.
	dir := t.TempDir()
	self, _ := filepath.Abs(os.Args[0])
	bin := filepath.Join(dir, "apimeter")
	os.WriteFile(bin, []byte("#!/bin/sh\nAPIMETER_TEST_AS_MAIN=1 exec '"+self+"' \"$@\"\n"), 0o755)

	script := `set -e
source <(apimeter completion bash)
complete -p apimeter
# What bash does on Tab: run the -C command with the line so far.
cmd=$(complete -p apimeter | sed -e "s/^complete .*-C //" -e "s/ apimeter$//")
echo "--- top"
COMP_LINE="apimeter " COMP_POINT=9 eval "$cmd apimeter '' apimeter"
echo "--- keys"
COMP_LINE="apimeter keys " COMP_POINT=14 eval "$cmd apimeter '' keys"
echo "--- flags"
COMP_LINE="apimeter keys list --" COMP_POINT=21 eval "$cmd apimeter -- list"
`
	cmd := exec.Command(bash, "-c", script)
	// The set-up names the program that printed it (this test binary,
	// which acts as apimeter with APIMETER_TEST_AS_MAIN).
	cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "APIMETER_TEST_AS_MAIN=1")
	b, err := cmd.CombinedOutput()
	out := string(b)
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	first, _, _ := strings.Cut(out, "\n")
	if !strings.HasPrefix(first, "complete ") || !strings.HasSuffix(first, " apimeter") || !strings.Contains(first, "-C ") {
		t.Errorf("complete -p apimeter printed %q, want the completion of apimeter", first)
	}
	section := func(name string) []string {
		_, rest, _ := strings.Cut(out, "--- "+name+"\n")
		rest, _, _ = strings.Cut(rest, "---")
		return strings.Fields(rest)
	}
	for _, want := range []string{"serve", "demo", "keys", "apps", "help", "completion", "export"} {
		if !slices.Contains(section("top"), want) {
			t.Errorf("completing 'apimeter ' offered %q, want %q among them", section("top"), want)
		}
	}
	if got := section("keys"); !slices.Contains(got, "create") || !slices.Contains(got, "list") || !slices.Contains(got, "revoke") {
		t.Errorf("completing 'apimeter keys ' offered %q, want create, list, revoke", got)
	}
	if got := section("flags"); !slices.Contains(got, "--json") || !slices.Contains(got, "--data") {
		t.Errorf("completing 'apimeter keys list --' offered %q, want --json and --data", got)
	}
}
