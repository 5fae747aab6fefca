// Package tests holds black-box tests: they build cmd/resilienced, run it as
// separate processes against a private redis-server, and talk to it over
// gRPC on loopback, as a caller would.
package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/topdeck/resilience/internal/testkit"
)

// binDir holds the binaries built once for the whole package.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "resilience-tests-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		os.Exit(1)
	}
	binDir = dir
	code := func() int {
		defer os.RemoveAll(dir)
		for _, cmd := range []string{"resilienced", "resilctl"} {
			out, err := exec.Command("go", "build", "-race", "-o", filepath.Join(dir, cmd), "../cmd/"+cmd).CombinedOutput()
			if err != nil {
				fmt.Fprintf(os.Stderr, "tests: cannot build %s: %v\n%s", cmd, err, out)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// replica is one resilienced process.
type replica struct {
	t           *testing.T
	cmd         *exec.Cmd
	addr        string
	metricsAddr string // host:port of /metrics, /healthz, /readyz
	conn        *grpc.ClientConn

	mu   sync.Mutex // protects logs
	logs strings.Builder

	exited chan struct{}
	err    error // set before exited closes
}

// startReplica runs resilienced with args (plus --listen on a free loopback
// port) and waits until it listens. It is stopped when the test ends.
func startReplica(t *testing.T, args ...string) *replica {
	t.Helper()
	return startReplicaEnv(t, nil, args...)
}

// startReplicaEnv is startReplica with extra environment variables
// ("NAME=value").
func startReplicaEnv(t *testing.T, env []string, args ...string) *replica {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "resilienced"), append([]string{"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "RESILIENCE_LISTEN=", "RESILIENCE_REDIS_URL=", "RESILIENCE_CONFIG=", "RESILIENCE_METRICS_LISTEN=")
	cmd.Env = append(cmd.Env, env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	r := &replica{t: t, cmd: cmd, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start resilienced: %v", err)
	}
	addrCh := make(chan [2]string, 1)
	go r.readLogs(stdout, addrCh)
	go func() { r.err = cmd.Wait(); close(r.exited) }()
	select {
	case a := <-addrCh:
		r.addr, r.metricsAddr = a[0], a[1]
	case <-r.exited:
		t.Fatalf("resilienced exited before listening (%v); output:\n%s", r.err, r.Logs())
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("resilienced not listening after 15s; output:\n%s", r.Logs())
	}
	r.conn, err = grpc.NewClient(r.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = r.conn.Close()
		r.Stop()
		if t.Failed() {
			t.Logf("resilienced %s output:\n%s", r.addr, r.Logs())
		}
	})
	return r
}

func (r *replica) readLogs(stdout io.Reader, addrCh chan<- [2]string) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	sent := false
	for sc.Scan() {
		line := sc.Text()
		r.mu.Lock()
		r.logs.WriteString(line + "\n")
		r.mu.Unlock()
		if !sent {
			var l struct {
				Msg     string `json:"msg"`
				Listen  string `json:"listen"`
				Metrics string `json:"metrics"`
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "resilienced started" {
				addrCh <- [2]string{l.Listen, l.Metrics}
				sent = true
			}
		}
	}
}

// Logs returns everything the process printed so far.
func (r *replica) Logs() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.logs.String()
}

// LogLines returns the JSON log lines, decoded.
func (r *replica) LogLines() []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(r.Logs()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// Stop sends SIGTERM and waits up to 15s for the process to exit.
func (r *replica) Stop() {
	select {
	case <-r.exited:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(15 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
		r.t.Errorf("resilienced did not stop within 15s of SIGTERM")
	}
}

// writeConfig writes a config file for the test and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "resilience.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ctxT returns a context that ends after d or with t.
func ctxT(t *testing.T, d time.Duration) context.Context { return testkit.Context(t, d) }
