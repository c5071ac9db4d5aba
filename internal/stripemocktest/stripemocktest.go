// Package stripemocktest starts Stripe's API mock (stripe-mock,
// github.com/stripe/stripe-mock, installed by .ci/run) for tests.
package stripemocktest

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// bin finds stripe-mock (github.com/stripe/stripe-mock, installed
// by .ci/run): $APIMETER_STRIPE_MOCK, the PATH, then $(go env GOPATH)/bin.
func bin(t testing.TB) string {
	if p := os.Getenv("APIMETER_STRIPE_MOCK"); p != "" {
		return p
	}
	if p, err := exec.LookPath("stripe-mock"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "stripe-mock")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := "stripe-mock not found: GOBIN=$(go env GOPATH)/bin go install github.com/stripe/stripe-mock@v0.203.0 (.ci/run does)"
	if os.Getenv("APIMETER_REQUIRE_STRIPE_MOCK") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Start starts stripe-mock on a free loopback port and returns
// its base URL; it is stopped when the test ends.
func Start(t testing.TB) string {
	bin := bin(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "-http-addr", addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "Listening for HTTP") {
			go io.Copy(io.Discard, out)
			return "http://" + addr
		}
	}
	t.Fatalf("stripe-mock stopped before listening on %s", addr)
	return ""
}
