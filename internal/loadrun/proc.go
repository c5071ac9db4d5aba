package loadrun

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Server is an `apimeter serve` child process.
type Server struct {
	Bin  string   // the apimeter binary
	Args []string // flags after `serve`
	Addr string   // host:port it listens on
	Log  *os.File // where its output goes; nil discards it
	Env  []string // extra environment of the process

	cmd    *exec.Cmd
	exited chan error // gets the process's exit, once
	// PeakRSS is the largest VmHWM read from the processes so far, bytes.
	PeakRSS int64
}

// Start starts the process and waits until /healthz answers.
func (s *Server) Start(ctx context.Context) error {
	args := append([]string{"serve", "--listen", s.Addr}, s.Args...)
	s.cmd = exec.Command(s.Bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.Log, s.Log
	s.cmd.Env = append(os.Environ(), s.Env...)
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	exited := make(chan error, 1)
	s.exited = exited
	go func() { exited <- s.cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("server exited at start: %v", err)
		case <-ctx.Done():
			s.cmd.Process.Kill()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		resp, err := http.Get("http://" + s.Addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				s.exited = exited
				return nil
			}
		}
	}
	s.cmd.Process.Kill()
	return errors.New("server did not answer /healthz within 60 s")
}

// Kill9 kills the process with SIGKILL and waits for it to go.
func (s *Server) Kill9() {
	s.readRSS()
	s.cmd.Process.Signal(syscall.SIGKILL)
	s.wait()
}

// Stop asks the process to stop (SIGTERM) and waits for it.
func (s *Server) Stop() error {
	s.readRSS()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-s.exited:
		return nil
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		return errors.New("server did not stop within 30 s of SIGTERM")
	}
}

func (s *Server) wait() {
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
	}
}

// RSS reads the process's current and peak resident set, in bytes.
func (s *Server) RSS() (cur, peak int64) {
	return procRSS(s.cmd.Process.Pid)
}

func (s *Server) readRSS() {
	if _, peak := s.RSS(); peak > s.PeakRSS {
		s.PeakRSS = peak
	}
}

// procRSS reads VmRSS and VmHWM of pid from /proc, in bytes (0 where
// /proc is absent).
func procRSS(pid int) (cur, peak int64) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) < 1 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			cur = n << 10
		case "VmHWM":
			peak = n << 10
		}
	}
	return cur, peak
}

// FreeAddr returns a loopback address with a free port.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// workspace is what a run needs around its server: a temporary directory
// (its data directory inside), a free loopback address and a file for the
// server's log. done removes it all.
type workspace struct {
	dir, data, addr string
	log             *os.File
}

func newWorkspace(prefix string) (*workspace, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	w := &workspace{dir: dir, data: filepath.Join(dir, "data")}
	if w.addr, err = FreeAddr(); err == nil {
		w.log, err = os.Create(filepath.Join(dir, "server.log"))
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return w, nil
}

func (w *workspace) done() {
	w.log.Close()
	os.RemoveAll(w.dir)
}

// procCPU reads the user and system CPU time of pid from /proc (0 where
// /proc is absent), at the kernel's usual 100 ticks per second.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses.
	_, rest, ok := strings.Cut(string(b), ") ")
	if !ok {
		return 0
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	user, _ := strconv.ParseInt(f[11], 10, 64)
	sys, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(user+sys) * 10 * time.Millisecond
}
