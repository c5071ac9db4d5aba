// Package redistest starts throwaway redis-server processes for tests that
// need a real Redis, and skips those tests where the binary is absent.
package redistest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Start starts a redis-server on a free loopback port with persistence
// off, stopped at the end of the test, and returns a client of it; it
// skips the test when redis-server is not on the PATH.
func Start(t testing.TB) *redis.Client {
	t.Helper()
	return StartServer(t).Client
}

// Server is a redis-server process started by StartServer.
type Server struct {
	Client *redis.Client
	Addr   string
	cmd    *exec.Cmd
}

// Pause stops the process with SIGSTOP: it keeps its connections and
// answers nothing, as a hung Redis does. Resume continues it.
func (s *Server) Pause() error  { return s.cmd.Process.Signal(syscall.SIGSTOP) }
func (s *Server) Resume() error { return s.cmd.Process.Signal(syscall.SIGCONT) }

// StartServer is Start, returning the process too.
func StartServer(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not found on PATH: skipping the Redis backend (CI installs it; apt-get install redis-server)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir(), "--protected-mode", "yes")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Kill()
		cmd.Wait()
	})
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	t.Cleanup(func() { c.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return &Server{Client: c, Addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd}
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on port %d did not answer PING: %v\n%s", port, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
