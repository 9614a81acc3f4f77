// Package chserver runs a real ClickHouse server as a child process for tests
// and local development: its own config, data directory and loopback ports.
package chserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// DefaultBinary is where Debian's clickhouse-server package installs the server.
const DefaultBinary = "/usr/sbin/clickhouse-server"

const (
	readyTimeout = 30 * time.Second
	stopGrace    = 10 * time.Second
)

// Options configures Start.
type Options struct {
	Dir    string // work directory for config, data and logs; a new temp dir when empty
	Binary string // server binary; DefaultBinary when empty
	Logger *slog.Logger
}

// Server is a running (or stopped) ClickHouse child process. Its ports and
// data directory stay fixed for its lifetime so Restart finds the same data.
type Server struct {
	dir    string
	binary string
	log    *slog.Logger

	tcpPort, httpPort, interPort int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
}

// Start writes a config into opts.Dir, starts the server in its own process
// group and returns once a native-protocol ping succeeds.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Binary == "" {
		opts.Binary = DefaultBinary
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if _, err := os.Stat(opts.Binary); err != nil {
		return nil, fmt.Errorf("clickhouse binary: %w", err)
	}
	if opts.Dir == "" {
		d, err := os.MkdirTemp("", "chserver-")
		if err != nil {
			return nil, fmt.Errorf("make work dir: %w", err)
		}
		opts.Dir = d
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("work dir: %w", err)
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	s := &Server{
		dir:       dir,
		binary:    opts.Binary,
		log:       opts.Logger.With("component", "chserver"),
		tcpPort:   ports[0],
		httpPort:  ports[1],
		interPort: ports[2],
	}
	if err := s.writeConfig(); err != nil {
		return nil, err
	}
	if err := s.launch(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Addr is host:port of the native protocol listener.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.tcpPort))
}

// Dir is the work directory holding config, data and logs.
func (s *Server) Dir() string { return s.dir }

// Kill ends the server with SIGKILL, as a crash would, and waits for it.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
	s.cmd = nil
	return nil
}

// Stop asks the server to shut down with SIGTERM and kills it if it has not
// exited after a grace period.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	pgid := -s.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(stopGrace):
		s.log.Warn("clickhouse did not stop in time, killing", "grace", stopGrace)
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-s.done
	}
	s.cmd = nil
	return nil
}

// Restart starts the server again on the same ports and data directory,
// stopping it first if it is still running.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.launch(ctx)
}

func (s *Server) launch(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("clickhouse already running")
	}
	out, err := os.OpenFile(filepath.Join(s.dir, "log", "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open server output: %w", err)
	}
	// Not CommandContext: the server outlives the ctx that started it and is
	// ended only by Stop or Kill.
	cmd := exec.Command(s.binary, "--config-file="+filepath.Join(s.dir, "config.xml"))
	cmd.Dir = s.dir
	cmd.Stdout = out
	cmd.Stderr = out
	// Its own process group, so a signal to the group reaches anything it forks
	// and a Ctrl-C in the test's terminal does not hit it twice.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return fmt.Errorf("start clickhouse: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = out.Close()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	s.log.Info("clickhouse starting", "pid", cmd.Process.Pid, "addr", s.Addr(), "dir", s.dir)

	if err := s.waitReady(ctx, done); err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		s.cmd = nil
		return fmt.Errorf("%w\n%s", err, s.logTail())
	}
	s.log.Info("clickhouse ready", "addr", s.Addr())
	return nil
}

func (s *Server) waitReady(ctx context.Context, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if lastErr = ping(ctx, s.Addr()); lastErr == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("clickhouse exited before it was ready")
		case <-ctx.Done():
			return fmt.Errorf("wait for clickhouse at %s: %w (last ping: %v)", s.Addr(), ctx.Err(), lastErr)
		case <-tick.C:
		}
	}
}

// ping opens a native connection and pings it, with short timeouts so a
// server that is still starting costs one tick, not the driver's 30 s default.
func ping(ctx context.Context, addr string) error {
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{addr},
		Protocol:    clickhouse.Native,
		DialTimeout: time.Second,
		ReadTimeout: 2 * time.Second,
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return conn.Ping(pctx)
}

func (s *Server) logTail() string {
	var b bytes.Buffer
	for _, name := range []string{"stdout.log", "clickhouse-server.err.log"} {
		data, err := os.ReadFile(filepath.Join(s.dir, "log", name))
		if err != nil {
			continue
		}
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&b, "--- %s ---\n%s\n", name, data)
	}
	return b.String()
}

// freePorts asks the kernel for n distinct free loopback ports. They are
// released before the server binds them; a collision in that gap is possible
// but rare, and shows up as a clear start-up error.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (s *Server) writeConfig() error {
	for _, d := range []string{"data", "tmp", "user_files", "format_schemas", "log"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o755); err != nil {
			return fmt.Errorf("make %s dir: %w", d, err)
		}
	}
	files := map[string]*template.Template{"config.xml": configXML, "users.xml": usersXML}
	for name, tmpl := range files {
		var b bytes.Buffer
		if err := tmpl.Execute(&b, s); err != nil {
			return fmt.Errorf("render %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(s.dir, name), b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// The keys below are the ones 18.16 needs to start outside /var/lib: every
// path, the three ports, and the users file. Newer servers accept the same
// file; max_server_memory_usage is ignored by 18.16 and honoured later.
var configXML = template.Must(template.New("config.xml").Parse(`<?xml version="1.0"?>
<yandex>
  <logger>
    <level>information</level>
    <log>{{.Dir}}/log/clickhouse-server.log</log>
    <errorlog>{{.Dir}}/log/clickhouse-server.err.log</errorlog>
    <size>10M</size>
    <count>2</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{{.TCPPort}}</tcp_port>
  <http_port>{{.HTTPPort}}</http_port>
  <interserver_http_port>{{.InterPort}}</interserver_http_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <path>{{.Dir}}/data/</path>
  <tmp_path>{{.Dir}}/tmp/</tmp_path>
  <user_files_path>{{.Dir}}/user_files/</user_files_path>
  <format_schema_path>{{.Dir}}/format_schemas/</format_schema_path>
  <users_config>{{.Dir}}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <max_concurrent_queries>100</max_concurrent_queries>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_server_memory_usage>2147483648</max_server_memory_usage>
</yandex>
`))

var usersXML = template.Must(template.New("users.xml").Parse(`<?xml version="1.0"?>
<yandex>
  <profiles>
    <default>
      <max_memory_usage>1000000000</max_memory_usage>
      <load_balancing>random</load_balancing>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas>
    <default>
      <interval>
        <duration>3600</duration>
        <queries>0</queries>
        <errors>0</errors>
        <result_rows>0</result_rows>
        <read_rows>0</read_rows>
        <execution_time>0</execution_time>
      </interval>
    </default>
  </quotas>
</yandex>
`))

// Template accessors: the ports are unexported so callers cannot change them
// between Start and Restart.

// TCPPort is the native protocol port.
func (s *Server) TCPPort() int { return s.tcpPort }

// HTTPPort is the HTTP interface port (not used by cdnpilot; 18.16 needs one).
func (s *Server) HTTPPort() int { return s.httpPort }

// InterPort is the interserver HTTP port.
func (s *Server) InterPort() int { return s.interPort }
