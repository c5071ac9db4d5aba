// Package chserver runs a real clickhouse-server as a child process:
// loopback only, its own configuration and data directory, non-default
// ports. Tests start one through chtest; the fault runs of internal/loadrun
// start one, kill it with SIGKILL and start it again on the same ports and
// data while collectors write to it.
package chserver

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
	"syscall"
	"time"
)

// ErrNoBinary is returned by Start when clickhouse-server is not installed.
var ErrNoBinary = errors.New("clickhouse-server not found in PATH, /usr/sbin or /usr/bin (apt-get install clickhouse-server clickhouse-client)")

// Server is a running clickhouse-server.
type Server struct {
	// Addr is the native protocol address, host:port.
	Addr string
	Dir  string

	bin, client string // clickhouse-server and clickhouse-client
	tcp, http   int    // its ports
	cmd         *exec.Cmd
	done        chan struct{}
	err         error // the process's exit, once done is closed
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
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp)), Dir: dir, bin: bin, client: client, tcp: tcp, http: http}
	if err := s.run(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Restart starts the server again on the same ports and data after Stop
// or Kill, and waits until it answers.
func (s *Server) Restart(ctx context.Context) error {
	select {
	case <-s.done:
	default:
		return errors.New("clickhouse-server: Restart while it runs")
	}
	return s.run(ctx)
}

// run starts the process with the configuration in s.Dir and waits until
// it answers.
func (s *Server) run(ctx context.Context) error {
	for _, a := range []string{s.Addr, net.JoinHostPort("127.0.0.1", strconv.Itoa(s.http))} {
		if answers(a) {
			return fmt.Errorf("clickhouse test server: %s already answers; refusing to start on it", a)
		}
	}
	cmd := exec.Command(s.bin, "--config-file="+filepath.Join(s.Dir, "config.xml"))
	cmd.Dir = s.Dir
	out, err := os.OpenFile(filepath.Join(s.Dir, "log", "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so that a signal to the test does not reach
	// it first and Stop can end it alone.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start clickhouse-server: %w", err)
	}
	done := make(chan struct{})
	s.cmd, s.done = cmd, done
	go func() { s.err = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		probe := exec.CommandContext(ctx, s.client, "--host", "127.0.0.1", "--port", strconv.Itoa(s.tcp), "-q", "SELECT 1")
		if o, err := probe.Output(); err == nil && string(o) == "1\n" {
			return nil
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(s.Dir, "log", "error.log"))
			so, _ := os.ReadFile(filepath.Join(s.Dir, "log", "stdout.log"))
			return fmt.Errorf("clickhouse-server exited at start (%v): %s%s", s.err, tail(so), tail(log))
		case <-ctx.Done():
			s.Stop()
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return errors.New("clickhouse-server did not answer within 60 s")
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

// Kill ends the server with SIGKILL, as a crash or the OOM killer would,
// and waits for it.
func (s *Server) Kill() {
	if s == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// DSN is the store address of database db on s, for clickhouse.Open.
func (s *Server) DSN(db string) string { return "clickhouse://" + s.Addr + "/" + db }
