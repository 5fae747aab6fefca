// Package redistest starts private redis-server processes for tests.
//
// Tests that touch Redis call Start (or NewClient) and get a server on a free
// loopback port that belongs to the test alone and is stopped when the test
// ends. When the REDIS_URL environment variable is set, that server is used
// instead and its current database is flushed before use.
//
// A missing redis-server binary fails the test with a message saying how to
// install it; tests never skip because Redis is missing.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one redis-server process started for a test. It can be killed and
// restarted on the same port to exercise store failures.
//
// A Server is safe for concurrent use.
type Server struct {
	tb   testing.TB
	bin  string
	dir  string
	port int
	url  string   // set when REDIS_URL is used; Kill and Restart are then refused
	conf string   // config file given as the first argument, if any (sentinels)
	args []string // extra command-line arguments (cluster nodes, sentinels, replicas)

	mu  sync.Mutex // protects cmd
	cmd *exec.Cmd
}

// Start starts a private redis-server on a free loopback port and registers
// its shutdown with tb.Cleanup. With REDIS_URL set, it returns a Server that
// points at that URL instead.
func Start(tb testing.TB) *Server {
	tb.Helper()
	if u := os.Getenv("REDIS_URL"); u != "" {
		s := &Server{tb: tb, url: u}
		c := s.Client()
		defer c.Close()
		if err := c.FlushDB(context.Background()).Err(); err != nil {
			tb.Fatalf("redistest: cannot flush REDIS_URL=%s: %v", u, err)
		}
		return s
	}
	return startProcess(tb, lookBinary(tb), tb.TempDir(), freePort(tb), "")
}

// lookBinary returns the path of redis-server or fails tb.
func lookBinary(tb testing.TB) string {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Fatalf("redistest: redis-server not found in PATH (%v); install it with `sudo apt-get install -y redis-server` or set REDIS_URL", err)
	}
	return bin
}

// startProcess starts redis-server on port with its files in dir, conf (if
// not empty) as its config file and args appended to the usual flags, and
// registers its shutdown with tb.Cleanup.
func startProcess(tb testing.TB, bin, dir string, port int, conf string, args ...string) *Server {
	tb.Helper()
	s := &Server{tb: tb, bin: bin, dir: dir, port: port, conf: conf, args: args}
	s.launch()
	tb.Cleanup(s.Kill)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string {
	if s.url != "" {
		opt, err := redis.ParseURL(s.url)
		if err != nil {
			s.tb.Fatalf("redistest: bad REDIS_URL: %v", err)
		}
		return opt.Addr
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL is a redis:// URL for the server.
func (s *Server) URL() string {
	if s.url != "" {
		return s.url
	}
	return "redis://" + s.Addr()
}

// Protocol is the RESP version the clients of this package speak: the
// service's, redisconn.Protocol (which redisconn's tests check; this package
// cannot import it, since those tests import this one).
const Protocol = 2

// Client returns a new client for the server, closed when the test ends.
// Its timeouts are short so that a killed server fails calls quickly.
func (s *Server) Client() *redis.Client {
	opt, err := redis.ParseURL(s.URL())
	if err != nil {
		s.tb.Fatalf("redistest: %v", err)
	}
	opt.DialTimeout = 200 * time.Millisecond
	opt.ReadTimeout = 500 * time.Millisecond
	opt.WriteTimeout = 500 * time.Millisecond
	opt.MaxRetries = -1
	opt.DialerRetries = 1
	opt.DialerRetryTimeout = 10 * time.Millisecond
	opt.Protocol = Protocol
	c := redis.NewClient(opt)
	s.tb.Cleanup(func() { _ = c.Close() })
	return c
}

// WaitAnswering waits until c answers a PING, polling every 20ms, as a
// client does once it has dropped the dead pooled connections of a killed or
// restarted server; it fails tb after d.
func WaitAnswering(tb testing.TB, c redis.UniversalClient, d time.Duration) {
	tb.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(d)
	for c.Ping(ctx).Err() != nil {
		if time.Now().After(deadline) {
			tb.Fatalf("redistest: no answer to PING within %s", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkGET stores value under the key "plain" through c and runs the
// sub-benchmark name: one plain go-redis GET of it per iteration, the floor
// that a benchmark of a path through Redis compares with.
func BenchmarkGET(b *testing.B, name string, c redis.Cmdable, value []byte) {
	b.Helper()
	ctx := context.Background()
	if err := c.Set(ctx, "plain", value, time.Hour).Err(); err != nil {
		b.Fatal(err)
	}
	b.Run(name, func(b *testing.B) {
		for b.Loop() {
			if err := c.Get(ctx, "plain").Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Kill stops the server at once (SIGKILL) and waits for the process to exit.
// It is a no-op when the server is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Freeze stops the server process with SIGSTOP: it keeps its connections and
// data but answers nothing (a hung Redis) until Thaw. It is a no-op when
// the server is not running or is the external REDIS_URL server.
func (s *Server) Freeze() { s.signal(syscall.SIGSTOP) }

// Thaw resumes a server stopped by Freeze (SIGCONT).
func (s *Server) Thaw() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// Running reports whether the server process is running (started and not
// killed).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil || s.url != ""
}

// Restart starts the server again on the same port after Kill. The data is
// gone: the server keeps nothing on disk, like a Redis that lost its memory.
func (s *Server) Restart() {
	s.tb.Helper()
	if s.url != "" {
		s.tb.Fatalf("redistest: cannot restart the external REDIS_URL server")
	}
	s.launch()
}

func (s *Server) launch() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	var args []string
	if s.conf != "" {
		args = append(args, s.conf)
	}
	args = append(args,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--logfile", filepath.Join(s.dir, "redis.log"),
	)
	cmd := exec.Command(s.bin, append(args, s.args...)...)
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("redistest: cannot start redis-server: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ready(s.Addr()) {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			s.cmd = nil
			s.tb.Fatalf("redistest: redis-server on %s not ready after 10s; log:\n%s", s.Addr(), log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ready reports whether a PING on addr answers PONG.
func ready(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// freePort asks the kernel for a free loopback TCP port.
func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("redistest: no free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreePort returns a free loopback TCP port, for tests that start other
// servers. The port is free when FreePort returns; a race with another
// process that takes it is possible but rare.
func FreePort(tb testing.TB) int {
	tb.Helper()
	return freePort(tb)
}

// String describes the server for test logs.
func (s *Server) String() string { return fmt.Sprintf("redis-server %s", s.Addr()) }
