package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/topdeck/resilience/internal/redistest"
)

// polyglotConfig gives breakers a short recovery, so that the examples check
// the half-open probe (permit_id) within a second.
const polyglotConfig = `
breakers:
  default:
    failure_threshold: 3
    recovery_timeout: 300ms
`

const installHint = "run examples/install-deps.sh to install the tools of the polyglot examples"

// TestPolyglotClients runs the Python (the SDK in clients/python) and Node
// (proto-loader at runtime) examples against one resilienced on Redis: each
// is a runnable check of the API from another language that exits non-zero
// when anything is not as expected.
func TestPolyglotClients(t *testing.T) {
	examples, err := filepath.Abs("../examples")
	if err != nil {
		t.Fatal(err)
	}
	requirePolyglotTools(t, examples)

	// Debug: the server logs every call then (a successful hot-path call is
	// logged at debug), so that each client's correlation ids can be found.
	r := startReplica(t, "--redis-url", redistest.Start(t).URL(), "--config", writeConfig(t, polyglotConfig), "--log-level", "debug")

	for _, tc := range []struct {
		name string
		argv []string
	}{
		{"python", []string{"bash", filepath.Join(examples, "python", "run.sh"), r.addr}},
		{"node", []string{"node", filepath.Join(examples, "node", "client.js"), r.addr}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := runExample(t, 60*time.Second, tc.argv...)
			if err != nil {
				t.Fatalf("%s example against %s: %v\n%s", tc.name, r.addr, err, out)
			}
			if want := tc.name + " client: OK"; !strings.Contains(out, want) {
				t.Fatalf("%s example output: got\n%s\nwant a line with %q", tc.name, out, want)
			}
			t.Logf("%s", strings.TrimSpace(out))
			// The server saw the caller's correlation ids (metadata
			// crossed the language boundary both ways: the clients
			// checked the echoed header themselves).
			prefix := "polyglot-" + tc.name + "-"
			n := 0
			for _, l := range r.LogLines() {
				if id, _ := l["correlation_id"].(string); strings.HasPrefix(id, prefix) {
					n++
				}
			}
			if n == 0 {
				t.Errorf("server log: got no line with a correlation_id starting %q, want one per RPC", prefix)
			}
		})
	}
}

// requirePolyglotTools fails (never skips) when a tool of the examples is
// missing, saying how to install it.
func requirePolyglotTools(t *testing.T, examples string) {
	t.Helper()
	var missing []string
	for _, tool := range []string{"bash", "node"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	pyOK := false
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(py, "-c", "import grpc, google.protobuf").Run() == nil {
			pyOK = true
			break
		}
	}
	if !pyOK {
		missing = append(missing, "python3 with grpc and protobuf (python3-grpcio, python3-protobuf)")
	}
	for _, mod := range []string{"@grpc/grpc-js", "@grpc/proto-loader"} {
		if _, err := os.Stat(filepath.Join(examples, "node", "node_modules", mod, "package.json")); err != nil {
			missing = append(missing, "examples/node/node_modules/"+mod)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing: %s; %s", strings.Join(missing, ", "), installHint)
	}
}

// runExample runs argv with a timeout and returns its combined output. On
// timeout the whole process group is killed (run.sh starts python).
func runExample(t *testing.T, timeout time.Duration, argv ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "TOPDECK_RESILIENCE_ADDR=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), ctx.Err()
	}
	return string(out), err
}
