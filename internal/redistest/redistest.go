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
	"strings"
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
	// The port is free when picked but may be taken before redis-server
	// binds it, by another test's redis-server among others; then that one
	// would answer the PING and vanish when its test ends. So the server
	// that answers must be this process, or it is tried again elsewhere.
	var lastErr error
	for try := 0; try < 5; try++ {
		s, err := startServer(t, bin)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatal(lastErr)
	return nil
}

func startServer(t testing.TB, bin string) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir(), "--protected-mode", "yes")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Kill()
		<-exited
	}
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	want := "process_id:" + strconv.Itoa(cmd.Process.Pid)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			c.Close()
			return nil, fmt.Errorf("redis-server on port %d exited at start:\n%s", port, out.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		info, err := c.Info(ctx, "server").Result()
		cancel()
		if err == nil {
			if !strings.Contains(info, want) {
				c.Close()
				stop()
				return nil, fmt.Errorf("port %d is another redis-server's", port)
			}
			t.Cleanup(func() { c.Close() })
			t.Cleanup(stop)
			return &Server{Client: c, Addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd}, nil
		}
		if time.Now().After(deadline) {
			c.Close()
			stop()
			return nil, fmt.Errorf("redis-server on port %d did not answer: %v\n%s", port, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
