package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

// flagNames returns every long flag of every command, and the commands
// each is on.
func flagNames(t *testing.T) map[string][]string {
	t.Helper()
	parser, err := newParser(&cli{})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string][]string{}
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		for _, f := range n.Flags {
			names["--"+f.Name] = append(names["--"+f.Name], n.FullPath())
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(parser.Model.Node)
	return names
}

// notOurs are flags the docs show of other programs.
var notOurs = map[string]string{
	"--prefix":              "npm ci --prefix sdktest/node",
	"--kafka":               "the --kafka-* family of serve's flags",
	"--test":                "node --test",
	"--host-resolver-rules": "chromium's flag in the browser test",
	"--bootstrap-server":    "Kafka's kafka-topics.sh",
	"--create":              "Kafka's kafka-topics.sh",
	"--partitions":          "Kafka's kafka-topics.sh",
	"--warmup":              "farm-bench, in docs/performance.md",
	"--vs":                  "farm-bench, in docs/performance.md",
	"--time":                "clickhouse-client, in docs/performance.md",
}

var flagRE = regexp.MustCompile(`--[a-z][a-z0-9-]*[a-z0-9]`)

// TestFlagsDocumented checks that every flag named in README.md, docs/*.md
// and this command's own messages exists, and that every flag is
// documented somewhere in them.
func TestFlagsDocumented(t *testing.T) {
	flags := flagNames(t)
	docs, _ := filepath.Glob("../../docs/*.md")
	docs = append(docs, "../../README.md")
	// The command's own messages, and those of the wiring and the
	// benchmark harnesses it calls.
	var sources []string
	for _, dir := range []string{".", "../../instance", "../../internal/bench"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		sources = append(sources, files...)
	}
	documented := map[string]bool{}
	for _, path := range append(docs, sources...) {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, name := range flagRE.FindAllString(line, -1) {
				if strings.HasSuffix(path, ".md") {
					documented[name] = true
				}
				if _, ok := flags[name]; !ok && notOurs[name] == "" {
					t.Errorf("%s:%d names %s, which no apimeter command has", path, i+1, name)
				}
			}
		}
	}
	for name, cmds := range flags {
		if name == "--help" || name == "--version" {
			continue
		}
		if !documented[name] {
			t.Errorf("%s (of %s) is documented neither in README.md nor in docs/", name, strings.Join(cmds, ", "))
		}
	}
}

// TestFlagValidation checks that nonsense values stop a command at start,
// with a message naming the flag, and that the defaults pass.
func TestFlagValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // "" for no error
	}{
		{"serve defaults", []string{"serve"}, ""},
		{"demo defaults", []string{"demo"}, ""},
		{"bench ingest defaults", []string{"bench", "ingest"}, ""},
		{"bench capture defaults", []string{"bench", "capture"}, ""},
		{"body cap zero keeps no body", []string{"serve", "--body-cap=0"}, ""},
		{"daily interval negative is never", []string{"serve", "--daily-interval=-1s"}, ""},
		{"quota off", []string{"serve", "--stats-quota=-1"}, ""},
		{"max body bytes negative", []string{"serve", "--max-body-bytes=-1"}, "--max-body-bytes -1: must be at least 1"},
		{"max body bytes zero", []string{"serve", "--max-body-bytes=0"}, "--max-body-bytes 0"},
		{"body cap negative", []string{"serve", "--body-cap=-5"}, "--body-cap -5: must be at least 0"},
		{"max batch events", []string{"serve", "--max-batch-events=0"}, "--max-batch-events 0"},
		{"dedupe horizon", []string{"serve", "--dedupe-horizon=-1h"}, "--dedupe-horizon -1h0m0s"},
		{"daily interval zero", []string{"serve", "--daily-interval=0s"}, "--daily-interval 0"},
		{"stats quota", []string{"serve", "--stats-quota=-7"}, "--stats-quota -7"},
		{"billing day", []string{"serve", "--billing-day=32"}, "--billing-day 32"},
		{"billing day zero", []string{"serve", "--billing-day=0"}, "--billing-day 0"},
		{"billing tz", []string{"serve", "--billing-tz=Mars/Olympus"}, `--billing-tz "Mars/Olympus"`},
		{"jwt leeway", []string{"serve", "--jwt-leeway=-1s"}, "--jwt-leeway -1s"},
		{"dedupe memory", []string{"serve", "--dedupe-memory=2GiB"}, ""},
		{"dedupe memory too small", []string{"serve", "--dedupe-memory=64KB"}, `--dedupe-memory "64KB": must be at least 1MB`},
		{"dedupe memory not a size", []string{"serve", "--dedupe-memory=lots"}, `--dedupe-memory "lots"`},
		{"memory limit not a size", []string{"serve", "--memory-limit=512"}, `--memory-limit "512"`},
		{"memory budget", []string{"serve", "--memory-budget=1GB"}, ""},
		{"memory budget too small", []string{"serve", "--memory-budget=10MB"}, `--memory-budget "10MB": must be at least 64MB`},
		{"memory budget not a size", []string{"serve", "--memory-budget=much"}, `--memory-budget "much"`},
		{"bench memory events", []string{"bench", "memory", "--events=0"}, "--events"},
		{"two at once", []string{"serve", "--body-cap=-5", "--max-batch-events=-2"}, "--max-batch-events -2"},
		{"demo backfill", []string{"demo", "--backfill=-3"}, "--backfill -3: must be at least 0"},
		{"demo rate", []string{"demo", "--rate=0"}, "--rate 0: want live calls per second above 0"},
		{"demo span", []string{"demo", "--span=0s"}, "--span 0s"},
		{"ingest clients", []string{"bench", "ingest", "--clients=0"}, "--clients 0"},
		{"ingest batch", []string{"bench", "ingest", "--batch=-1"}, "--batch -1"},
		{"ingest dup rate", []string{"bench", "ingest", "--dup-rate=1.5"}, "--dup-rate 1.5"},
		{"ingest events", []string{"bench", "ingest", "--events=0"}, "--events 0"},
		{"capture rounds", []string{"bench", "capture", "--rounds=0"}, "--rounds 0"},
		{"capture duration", []string{"bench", "capture", "--duration=-1s"}, "--duration -1s"},
		{"capture sample rate", []string{"bench", "capture", "--sample-rate=0"}, "--sample-rate 0"},
		{"capture body bytes", []string{"bench", "capture", "--body-bytes=-1"}, "--body-bytes -1"},
		{"store duckdb", []string{"serve", "--store=duckdb"}, ""},
		{"store clickhouse", []string{"serve", "--store=clickhouse://ch:9000/apimeter"}, ""},
		{"store clickhouse, apps", []string{"apps", "create", "--org=a", "--store=clickhouse://ch/apimeter"}, ""},
		{"store without database", []string{"serve", "--store=clickhouse://ch:9000"}, "--store: store address clickhouse://ch:9000: no database"},
		{"store of another kind", []string{"keys", "list", "--store=postgres://db/x"}, "--store postgres://db/x: want duckdb"},
		{"store, bench ingest", []string{"bench", "ingest", "--store=clickhouse://"}, "--store: store address clickhouse://: "},
		{"retention", []string{"serve", "--retention=-1h"}, "--retention -1h0m0s: must be at least 0"},
		{"gateway to kafka", []string{"gateway", "--kafka-brokers=127.0.0.1:9092", "--kafka-topic=calls", "--kafka-format=apim"}, ""},
		{"gateway to event hubs", []string{"gateway", "--kafka-event-hubs=Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey=k", "--kafka-topic=calls"}, ""},
		{"gateway kafka topic", []string{"gateway", "--kafka-brokers=127.0.0.1:9092"}, "--kafka-topic"},
		{"gateway kafka and collector", []string{"gateway", "--kafka-brokers=127.0.0.1:9092", "--kafka-topic=calls", "--collector=http://c:7070"}, "--collector and --kafka-brokers (or --kafka-event-hubs) exclude each other"},
		{"gateway kafka delivery timeout", []string{"gateway", "--kafka-brokers=127.0.0.1:9092", "--kafka-topic=calls", "--kafka-delivery-timeout=10ms"}, "--kafka-delivery-timeout 10ms"},
		{"gateway kafka format", []string{"gateway", "--kafka-brokers=127.0.0.1:9092", "--kafka-topic=calls", "--kafka-format=xml"}, "--kafka-format"},
		{"gateway event hubs string", []string{"gateway", "--kafka-event-hubs=nonsense", "--kafka-topic=calls"}, "--kafka-event-hubs: event hubs: the connection string has no Endpoint"},
		{"gateway sasl password alone", []string{"gateway", "--kafka-brokers=127.0.0.1:9092", "--kafka-topic=calls", "--kafka-sasl-password=p"}, "--kafka-sasl-password needs --kafka-sasl-user"},
		{"consume sasl password alone", []string{"consume", "--brokers=127.0.0.1:9092", "--sasl-password=p"}, "--sasl-password needs --sasl-user"},
		{"consume still checks the store's flags", []string{"consume", "--brokers=127.0.0.1:9092", "--max-body-bytes=0"}, "--max-body-bytes 0"},
		{"serve kafka sasl password alone", []string{"serve", "--kafka-brokers=127.0.0.1:9092", "--kafka-sasl-password=p"}, "--kafka-sasl-password needs --kafka-sasl-user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c cli
			parser, err := newParser(&c, kong.Exit(func(code int) { t.Fatalf("exit %d", code) }))
			if err != nil {
				t.Fatal(err)
			}
			_, err = parser.Parse(tc.args)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("apimeter %s: %v, want no error", strings.Join(tc.args, " "), err)
			case tc.want != "" && err == nil:
				t.Fatalf("apimeter %s started, want an error naming %q", strings.Join(tc.args, " "), tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("apimeter %s: %v, want it to say %q", strings.Join(tc.args, " "), err, tc.want)
			}
		})
	}
}

// TestBadFlagOutput runs the command with a bad flag: it prints the error
// and one line naming --help, not the whole help, and exits 2.
func TestBadFlagOutput(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		want, hint string
	}{
		{[]string{"serve", "--jwtjwks", "x"}, `unknown flag --jwtjwks, did you mean "--jwt-jwks"?`, "Run 'apimeter serve --help' for usage."},
		{[]string{"serve", "--max-body-bytes=-1"}, "--max-body-bytes -1: must be at least 1", "Run 'apimeter serve --help' for usage."},
		{[]string{"apps", "create"}, "missing flags: --org", "Run 'apimeter apps create --help' for usage."},
		{[]string{"frobnicate"}, "unexpected argument frobnicate", "Run 'apimeter --help' for usage."},
	} {
		cmd := exec.Command(os.Args[0], tc.args...)
		cmd.Env = append(os.Environ(), "APIMETER_TEST_AS_MAIN=1")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 {
			t.Errorf("apimeter %v: %v, want exit status 2", tc.args, err)
		}
		lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
		if len(lines) != 2 || !strings.Contains(lines[0], tc.want) || lines[1] != tc.hint {
			t.Errorf("apimeter %v printed on stderr:\n%s\nwant two lines: the error (%q) and %q", tc.args, stderr.String(), tc.want, tc.hint)
		}
		if stdout.Len() != 0 {
			t.Errorf("apimeter %v printed on stdout:\n%s\nwant nothing", tc.args, stdout.String())
		}
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	exited := -1
	parser, err := newParser(&cli{}, kong.Writers(&out, &out), kong.Exit(func(code int) {
		if exited < 0 {
			exited = code
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	parser.Parse([]string{"--version"})
	if exited != 0 || strings.TrimSpace(out.String()) != version() || !strings.HasPrefix(out.String(), "apimeter ") {
		t.Fatalf("--version printed %q and exited %d, want %q and 0", out.String(), exited, version())
	}

	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/apimeter/apimeter", Version: "v0.3.0"}}
	for _, tc := range []struct {
		name     string
		settings []debug.BuildSetting
		want     string
	}{
		{"no vcs", nil, "apimeter v0.3.0 (go1.26.8)"},
		{"clean", []debug.BuildSetting{{Key: "vcs.revision", Value: "b85afca0"}, {Key: "vcs.time", Value: "2026-12-02T00:00:00Z"}, {Key: "vcs.modified", Value: "false"}},
			"apimeter v0.3.0 (commit b85afca0 of 2026-12-02T00:00:00Z, go1.26.8)"},
		{"modified", []debug.BuildSetting{{Key: "vcs.revision", Value: "b85afca0"}, {Key: "vcs.modified", Value: "true"}},
			"apimeter v0.3.0 (commit b85afca0 with uncommitted changes, go1.26.8)"},
	} {
		bi := *bi
		bi.Settings = slices.Clone(tc.settings)
		if got := versionOf(&bi); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestNoArgumentsPrintsHelp: `apimeter` alone prints the help on stdout
// and exits 0, as a first try should; `apimeter version` prints the
// version.
func TestNoArgumentsPrintsHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "Usage: apimeter <command>"},
		{[]string{"version"}, version()},
	} {
		cmd := exec.Command(os.Args[0], tc.args...)
		cmd.Env = append(os.Environ(), "APIMETER_TEST_AS_MAIN=1")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Errorf("apimeter %v: %v, want exit status 0; stderr:\n%s", tc.args, err, stderr.String())
		}
		if !strings.Contains(stdout.String(), tc.want) {
			t.Errorf("apimeter %v printed on stdout:\n%s\nwant %q", tc.args, stdout.String(), tc.want)
		}
	}
}
