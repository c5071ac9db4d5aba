package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/demo"
)

// TestDashboardInBrowser runs `apimeter demo` in-process and the dashboard's
// end-to-end test (web/e2e, node --test with playwright-core) against it in
// Debian's chromium. Screenshots and timings land in web/e2e/output.
func TestDashboardInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the browser test takes about a minute")
	}
	node, browser, webDir := browserTestTools(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &demoCmd{Listen: "127.0.0.1:0", APIListen: "127.0.0.1:0", Org: "demo", Env: "prod",
		Backfill: 6000, Span: 30 * 24 * time.Hour, Rate: 1, LogLevel: 8}
	ready := make(chan demoInfo, 1)
	done := make(chan error, 1)
	go func() { done <- c.run(ctx, func(d demoInfo) { ready <- d }) }()
	stopped := false
	t.Cleanup(func() { // on failure too: the demo removes its data directory as it stops
		if !stopped {
			cancel()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
			}
		}
	})
	var d demoInfo
	select {
	case d = <-ready:
	case err := <-done:
		t.Fatalf("demo stopped before it was ready: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("demo not ready after 2 minutes")
	}
	time.Sleep(2 * time.Second) // some live traffic

	runBrowserTest(t, node, webDir, "e2e/dashboard.test.mjs",
		"APIMETER_URL="+d.URL,
		"APIMETER_DASHBOARD="+d.Dashboard,
		"APIMETER_ORG="+d.Org,
		"APIMETER_ENV="+d.Env,
		"APIMETER_KEY="+d.Key,
		"APIMETER_SAMPLE_API="+d.APIURL,
		"APIMETER_SAMPLE_TOKEN="+demo.Token(d.Secret, demo.GuideUsers[0]),
		"APIMETER_E2E_OUT="+filepath.Join(webDir, "e2e", "output"),
		"CHROMIUM="+browser,
	)

	began := time.Now()
	cancel()
	stopped = true
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("demo: %v", err)
		}
		t.Logf("demo stopped %v after its context ended", time.Since(began).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Error("demo still running 15 s after its context ended")
	}
}

// browserTestTools answers node, the browser and web/ for a test that runs
// a browser test under web/, or skips the test saying what is missing.
func browserTestTools(t *testing.T) (node, browser, webDir string) {
	t.Helper()
	node, browser, webDir, missing := browserTools()
	if missing != "" {
		t.Skip(missing)
	}
	return node, browser, webDir
}

// browserTools finds node, the browser (CHROMIUM, else Debian's) and web/
// with its packages; missing says what is absent, if anything.
func browserTools() (node, browser, webDir, missing string) {
	node, err := exec.LookPath("node")
	if err != nil {
		return "", "", "", "node is not on the PATH; install nodejs (and npm ci in web/) to run the dashboard's browser test"
	}
	browser = os.Getenv("CHROMIUM")
	if browser == "" {
		browser = "/usr/bin/chromium"
	}
	if _, err := os.Stat(browser); err != nil {
		return "", "", "", fmt.Sprintf("no browser at %s; apt-get install -y --no-install-recommends chromium to run the dashboard's browser test", browser)
	}
	webDir, _ = filepath.Abs(filepath.Join("..", "..", "web"))
	if _, err := os.Stat(filepath.Join(webDir, "node_modules", "playwright-core")); err != nil {
		return "", "", "", "web/node_modules/playwright-core is absent; run PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix web"
	}
	return node, browser, webDir, ""
}

// runBrowserTest runs one node --test file under web/ with env added and
// fails the test unless it ran to a pass.
func runBrowserTest(t *testing.T, node, webDir, file string, env ...string) {
	t.Helper()
	cmd := exec.Command(node, "--test", "--test-reporter=tap", file)
	cmd.Dir = webDir
	cmd.Env = append(os.Environ(), env...)
	b, err := cmd.CombinedOutput()
	t.Logf("node --test %s:\n%s", file, b)
	if err != nil {
		t.Fatalf("the browser test %s failed: %v", file, err)
	}
	if !strings.Contains(string(b), "# fail 0") || !strings.Contains(string(b), "# skipped 0") {
		t.Fatalf("the browser test %s did not run to a pass (see its output above)", file)
	}
}
