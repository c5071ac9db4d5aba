// Package chtest starts a real clickhouse-server for tests: loopback only,
// its own configuration and data directory, non-default ports. One server
// serves a whole test binary (Shared); each test gets a database of its own
// (Database).
package chtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// RequireEnv names the environment variable that turns a missing
// clickhouse-server from a skip into a failure (set in CI).
const RequireEnv = "APIMETER_REQUIRE_CLICKHOUSE"

// ErrNoBinary is returned by Start when clickhouse-server is not installed.
var ErrNoBinary = errors.New("clickhouse-server not found in PATH, /usr/sbin or /usr/bin (apt-get install clickhouse-server clickhouse-client)")

// Server is a running clickhouse-server.
type Server struct {
	// Addr is the native protocol address, host:port.
	Addr string
	Dir  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // the process's exit, once done is closed
}

const config = `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{dir}/log/server.log</log><errorlog>{dir}/log/error.log</errorlog><size>10M</size><count>1</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{tcp}</tcp_port>
  <http_port>{http}</http_port>
  <path>{dir}/data/</path>
  <tmp_path>{dir}/tmp/</tmp_path>
  <user_files_path>{dir}/user_files/</user_files_path>
  <format_schema_path>{dir}/format_schemas/</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
`

const users = `<?xml version="1.0"?>
<yandex>
  <profiles>
    <default>
      <allow_experimental_low_cardinality_type>1</allow_experimental_low_cardinality_type>
      <max_memory_usage>4000000000</max_memory_usage>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`

// lookPath finds a ClickHouse program in PATH or where Debian's packages
// put it (/usr/sbin is not in every user's PATH).
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH, /usr/sbin or /usr/bin", name)
}

// freePort returns a loopback port nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func answers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Start starts clickhouse-server with its data in dir and waits until it
// answers. It refuses ports another process already answers on, so that the
// readiness probe cannot reach a different server.
func Start(ctx context.Context, dir string) (*Server, error) {
	bin, err := lookPath("clickhouse-server")
	if err != nil {
		return nil, ErrNoBinary
	}
	client, err := lookPath("clickhouse-client")
	if err != nil {
		return nil, fmt.Errorf("clickhouse-client not found: %w", err)
	}
	tcp, err := freePort()
	if err != nil {
		return nil, err
	}
	http, err := freePort()
	if err != nil {
		return nil, err
	}
	if tcp == 9000 || http == 8123 {
		return nil, errors.New("clickhouse test server: got a default port; refusing")
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp))
	for _, a := range []string{addr, net.JoinHostPort("127.0.0.1", strconv.Itoa(http))} {
		if answers(a) {
			return nil, fmt.Errorf("clickhouse test server: %s already answers; refusing to start on it", a)
		}
	}
	for _, sub := range []string{"data", "tmp", "log", "user_files", "format_schemas"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	r := func(s string) string {
		for k, v := range map[string]string{"{dir}": dir, "{tcp}": strconv.Itoa(tcp), "{http}": strconv.Itoa(http)} {
			s = strings.ReplaceAll(s, k, v)
		}
		return s
	}
	if err := os.WriteFile(filepath.Join(dir, "config.xml"), []byte(r(config)), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "users.xml"), []byte(users), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config-file="+filepath.Join(dir, "config.xml"))
	cmd.Dir = dir
	out, err := os.Create(filepath.Join(dir, "log", "stdout.log"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so that a signal to the test does not reach
	// it first and Stop can end it alone.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start clickhouse-server: %w", err)
	}
	s := &Server{Addr: addr, Dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() { s.err = cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		probe := exec.CommandContext(ctx, client, "--host", "127.0.0.1", "--port", strconv.Itoa(tcp), "-q", "SELECT 1")
		if o, err := probe.Output(); err == nil && string(o) == "1\n" {
			return s, nil
		}
		select {
		case <-s.done:
			log, _ := os.ReadFile(filepath.Join(dir, "log", "error.log"))
			so, _ := os.ReadFile(filepath.Join(dir, "log", "stdout.log"))
			return nil, fmt.Errorf("clickhouse-server exited at start (%v): %s%s", s.err, tail(so), tail(log))
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, errors.New("clickhouse-server did not answer within 60 s")
		}
	}
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Stop ends the server (SIGTERM, then SIGKILL after 20 s) and waits for it.
func (s *Server) Stop() error {
	if s == nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	return nil
}

// DSN is the store address of database db on s, for clickhouse.Open.
func (s *Server) DSN(db string) string { return "clickhouse://" + s.Addr + "/" + db }

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
	sharedDir  string
	dbSeq      atomic.Int64
)

// Shared returns the test binary's server, starting it on first use. When
// none can be started it skips t, or fails it when RequireEnv is set.
// Call StopShared from TestMain after m.Run.
func Shared(t testing.TB) *Server {
	t.Helper()
	sharedOnce.Do(func() {
		if _, err := lookPath("clickhouse-server"); err != nil {
			sharedErr = ErrNoBinary
			return
		}
		sharedDir, sharedErr = os.MkdirTemp("", "apimeter-clickhouse-")
		if sharedErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		shared, sharedErr = Start(ctx, sharedDir)
	})
	if sharedErr != nil {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("clickhouse: %v (%s is set, so this is a failure, not a skip)", sharedErr, RequireEnv)
		}
		t.Skipf("clickhouse: %v; skipping (set %s=1 to fail instead)", sharedErr, RequireEnv)
	}
	return shared
}

// Database returns a fresh database name on the shared server for t.
func Database(t testing.TB) string {
	return fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
}

// StopShared stops the shared server, if one was started, and removes its
// directory.
func StopShared() {
	if shared != nil {
		shared.Stop()
	}
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
}
