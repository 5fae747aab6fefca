package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

const resilctlConfig = `
limits:
  ado:
    max_calls: 2
    time_window: 1h
breakers:
  default:
    failure_threshold: 3
    recovery_timeout: 1h
`

// ctlResult is what one resilctl run printed and its exit status.
type ctlResult struct {
	stdout, stderr string
	code           int
}

// ctlCommand prepares resilctl with args, RESILIENCE_ADDR set to addr
// (empty: unset). The race detector's default 1s pause at exit is turned
// off: resilctl runs dozens of times here.
func ctlCommand(ctx context.Context, addr string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "resilctl"), args...)
	cmd.Env = append(os.Environ(), "RESILIENCE_ADDR="+addr, strings.TrimSpace("GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	return cmd
}

// ctl runs resilctl against addr with args (and stdin) and waits for it.
func ctl(t *testing.T, addr, stdin string, args ...string) ctlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := ctlCommand(ctx, addr, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return ctlResult{stdout.String(), stderr.String(), 0}
	case errors.As(err, &exit) && exit.Exited():
		return ctlResult{stdout.String(), stderr.String(), exit.ExitCode()}
	default:
		t.Fatalf("resilctl %q: %v (stderr %q)", args, err, stderr.String())
		return ctlResult{}
	}
}

// ok runs resilctl and fails the test unless it exits 0.
func ok(t *testing.T, addr string, args ...string) string {
	t.Helper()
	r := ctl(t, addr, "", args...)
	if r.code != 0 {
		t.Fatalf("resilctl %q: exit status %d, want 0; stderr %q", args, r.code, r.stderr)
	}
	return r.stdout
}

// okJSON runs resilctl with --output json and decodes its output into v.
func okJSON(t *testing.T, addr string, v any, args ...string) {
	t.Helper()
	out := ok(t, addr, append([]string{"--output", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("resilctl %q: output is not the JSON expected: %v\n%s", args, err, out)
	}
}

// field returns the value of a "field  value" row of table output.
func field(t *testing.T, out, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^ *` + regexp.QuoteMeta(name) + `  +(.*)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q row in:\n%s", name, out)
	}
	return m[1]
}

// jsonStatus is the part of a BreakerStatus the tests read.
type jsonStatus struct {
	Name       string `json:"name"`
	State      string `json:"state"`
	Generation string `json:"generation"`
	Policy     struct {
		Name             string `json:"name"`
		FailureThreshold string `json:"failure_threshold"`
		RecoveryTimeout  string `json:"recovery_timeout"`
	} `json:"policy"`
}

// Every resilctl command against a fleet of two replicas sharing Redis.
func TestResilctl(t *testing.T) {
	f := startFleet(t, 2, resilctlConfig)
	a, b := f.replicas[0].addr, f.replicas[1].addr

	t.Run("breakers", func(t *testing.T) {
		out := ok(t, a, "breakers", "reset", "ado/x", "--open")
		if got := field(t, out, "state"); got != "OPEN" {
			t.Errorf("reset --open: state got %q, want OPEN", got)
		}
		var st jsonStatus
		okJSON(t, b, &st, "breakers", "get", "ado/x")
		if st.Name != "ado/x" || st.State != "CIRCUIT_STATE_OPEN" || st.Generation == "0" ||
			st.Policy.FailureThreshold != "3" || st.Policy.RecoveryTimeout != "3600s" {
			t.Errorf("get on the other replica: got %+v, want ado/x OPEN, generation > 0, failure_threshold 3, recovery_timeout 3600s", st)
		}
		out = ok(t, b, "breakers", "get", "never-used")
		if field(t, out, "state") != "CLOSED" || field(t, out, "policy") != "default" || field(t, out, "failure threshold") != "3" {
			t.Errorf("get of a fresh breaker: got\n%s\nwant CLOSED under policy default (failure threshold 3)", out)
		}

		ok(t, a, "breakers", "reset", "ado/y")
		okJSON(t, a, &st, "breakers", "reset", "--open", "ado/z")
		if st.State != "CIRCUIT_STATE_OPEN" {
			t.Errorf("reset --open (flag first), JSON: state got %q, want CIRCUIT_STATE_OPEN", st.State)
		}
		ok(t, a, "breakers", "reset", "ado/z")
		ok(t, a, "breakers", "reset", "other")

		// Two pages of two: every breaker with the prefix, in order.
		var list struct {
			Breakers []jsonStatus `json:"breakers"`
		}
		okJSON(t, b, &list, "breakers", "list", "--prefix", "ado/", "--page-size", "2")
		var names, states []string
		for _, s := range list.Breakers {
			names, states = append(names, s.Name), append(states, s.State)
		}
		if want := []string{"ado/x", "ado/y", "ado/z"}; !slices.Equal(names, want) {
			t.Errorf("list --prefix ado/ --page-size 2: got %q, want %q", names, want)
		}
		if want := []string{"CIRCUIT_STATE_OPEN", "CIRCUIT_STATE_CLOSED", "CIRCUIT_STATE_CLOSED"}; !slices.Equal(states, want) {
			t.Errorf("list states: got %q, want %q", states, want)
		}

		out = ok(t, b, "breakers", "list", "--prefix", "ado/")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || !regexp.MustCompile(`^NAME +STATE +FAILURES +GENERATION +PROBES +OPENED AT +NEXT PROBE AT +POLICY$`).MatchString(lines[0]) ||
			!regexp.MustCompile(`^ado/x +OPEN +0 +\d+ +0 +\d{4}-\d\d-\d\dT\S+Z +\S+Z +default$`).MatchString(lines[1]) ||
			!regexp.MustCompile(`^ado/z +CLOSED +0 +\d+ +0 +`).MatchString(lines[3]) {
			t.Errorf("list table: got\n%s\nwant a header and rows ado/x OPEN, ado/y, ado/z CLOSED", out)
		}
		if r := ctl(t, b, "", "breakers", "list", "--prefix", "none/"); r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "no breakers found") {
			t.Errorf("empty list: got %+v, want exit 0, no output, a note on stderr", r)
		}
	})

	t.Run("watch", func(t *testing.T) {
		table := startWatch(t, b, "breakers", "watch", "--prefix", "w/")
		js := startWatch(t, a, "--output", "json", "breakers", "watch", "--prefix", "w/")
		// Neither sees a breaker outside its prefix.
		ok(t, a, "breakers", "reset", "x/1", "--open")
		ok(t, a, "breakers", "reset", "w/1", "--open") // replica 0, seen on both

		line := table.next(t)
		if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT[\d:.]+Z  w/1  CLOSED -> OPEN  reason=reset  generation=\d+$`).MatchString(line) {
			t.Errorf("watch table line: got %q, want <time>  w/1  CLOSED -> OPEN  reason=reset  generation=N", line)
		}
		var ev struct {
			Breaker, From, To, Reason, At, Generation string
		}
		line = js.next(t)
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("watch JSON line %q: %v", line, err)
		}
		if ev.Breaker != "w/1" || ev.From != "CIRCUIT_STATE_CLOSED" || ev.To != "CIRCUIT_STATE_OPEN" || ev.Reason != "reset" || ev.At == "" || ev.Generation == "" {
			t.Errorf("watch JSON event: got %+v, want w/1 CLOSED -> OPEN, reason reset, with at and generation", ev)
		}
		table.interrupt(t)
		js.interrupt(t)
	})

	t.Run("limits", func(t *testing.T) {
		out := ok(t, a, "limits", "check", "org-1", "--policy", "ado")
		if field(t, out, "allowed") != "true" || field(t, out, "reason") != "ALLOWED" || field(t, out, "key") != "org-1" {
			t.Errorf("check --policy: got\n%s\nwant allowed, reason ALLOWED", out)
		}

		// A check consumes nothing (dry_run): after three checks the two
		// tokens of the limit are still there for real calls.
		var resp struct {
			Allowed    bool    `json:"allowed"`
			Reason     string  `json:"reason"`
			Remaining  string  `json:"remaining"`
			RetryAfter *string `json:"retry_after"`
		}
		for i := 0; i < 3; i++ {
			okJSON(t, b, &resp, "limits", "check", "dry", "--policy", "ado")
			if !resp.Allowed || resp.Reason != "ACQUIRE_REASON_ALLOWED" {
				t.Fatalf("check %d of a fresh key: got %+v, want allowed (does the server honour AcquireRequest.dry_run?)", i+1, resp)
			}
		}
		ctx := ctxT(t, 10*time.Second)
		for i := 0; i < 2; i++ {
			r, err := f.rs(i).Acquire(ctx, &resiliencev1.AcquireRequest{Key: "dry", Policy: "ado"})
			if err != nil || !r.GetAllowed() {
				t.Fatalf("Acquire %d after the checks: got %v, %v; want allowed (the checks must not consume tokens)", i+1, r, err)
			}
		}
		okJSON(t, a, &resp, "limits", "check", "dry", "--policy", "ado")
		if resp.Allowed || resp.Reason != "ACQUIRE_REASON_RATE_LIMITED" || resp.RetryAfter == nil || resp.Remaining != "0" {
			t.Errorf("check of an empty bucket: got %+v, want denied, RATE_LIMITED, retry_after set, remaining 0", resp)
		}

		out = ok(t, b, "limits", "check", "inline", "--max-calls", "5", "--window", "1m", "--burst", "3", "--cost", "3")
		if field(t, out, "allowed") != "true" {
			t.Errorf("inline check with cost = burst: got\n%s\nwant allowed", out)
		}
		r := ctl(t, b, "", "limits", "check", "inline", "--max-calls", "5", "--window", "1m", "--burst", "3", "--cost", "4")
		if r.code != 1 || !strings.HasPrefix(r.stderr, "resilctl: INVALID_ARGUMENT: cost") {
			t.Errorf("inline check with cost > burst: got %+v, want exit 1 and INVALID_ARGUMENT: cost ...", r)
		}
	})

	t.Run("cache", func(t *testing.T) {
		out := ok(t, a, "cache", "set", "greeting", "hello world", "--ttl", "1m")
		if field(t, out, "stored") != "true" {
			t.Errorf("set: got\n%s\nwant stored true", out)
		}
		out = ok(t, b, "cache", "get", "greeting")
		if field(t, out, "found") != "true" || field(t, out, "value") != "hello world" || !strings.HasSuffix(field(t, out, "ttl"), "s") {
			t.Errorf("get on the other replica: got\n%s\nwant found, value hello world, a ttl", out)
		}
		if got := ok(t, b, "cache", "get", "--raw", "greeting"); got != "hello world" {
			t.Errorf("get --raw: got %q, want %q", got, "hello world")
		}
		var get struct {
			Found bool    `json:"found"`
			Value string  `json:"value"`
			TTL   *string `json:"ttl"`
		}
		okJSON(t, a, &get, "cache", "get", "greeting")
		if !get.Found || get.Value != "aGVsbG8gd29ybGQ=" || get.TTL == nil {
			t.Errorf("get JSON: got %+v, want found, value base64 of hello world, ttl set", get)
		}

		bin := "\x00\x01binary\xff"
		if r := ctl(t, a, bin, "cache", "set", "bin", "-"); r.code != 0 {
			t.Fatalf("set from stdin: %+v", r)
		}
		if got := ok(t, b, "cache", "get", "bin", "--raw"); got != bin {
			t.Errorf("get --raw of a binary value: got %q, want %q", got, bin)
		}
		if got := field(t, ok(t, b, "cache", "get", "bin"), "value"); got != strconv.Quote(bin) {
			t.Errorf("table value of a binary value: got %s, want %s", got, strconv.Quote(bin))
		}

		r := ctl(t, b, "", "cache", "get", "missing")
		if r.code != 0 || field(t, r.stdout, "found") != "false" {
			t.Errorf("get of a missing key: got %+v, want exit 0 and found false", r)
		}

		var del struct {
			Deleted  string `json:"deleted"`
			Degraded bool   `json:"degraded"`
		}
		okJSON(t, b, &del, "cache", "del", "greeting", "missing")
		if del.Deleted != "1" || del.Degraded {
			t.Errorf("del greeting missing: got %+v, want deleted 1", del)
		}
		for _, k := range []string{"p/1", "p/2", "q/1"} {
			ok(t, a, "cache", "set", k, "v")
		}
		if got := field(t, ok(t, b, "cache", "delete-pattern", "p/*"), "deleted"); got != "2" {
			t.Errorf("delete-pattern p/*: deleted got %s, want 2", got)
		}
		okJSON(t, a, &del, "cache", "delete-pattern", "p/*")
		if del.Deleted != "0" {
			t.Errorf("delete-pattern p/* again: deleted got %s, want 0", del.Deleted)
		}

		// Statistics are fleet-wide once each replica has flushed its counts.
		var stats struct {
			Hits, Misses, Sets, Deletes, Keys string
			HitRatio                          float64 `json:"hit_ratio"`
		}
		eventually(t, 10*time.Second, "cache stats never counted every replica's calls", func() bool {
			okJSON(t, b, &stats, "cache", "stats")
			hits, _ := strconv.Atoi(stats.Hits)
			sets, _ := strconv.Atoi(stats.Sets)
			deletes, _ := strconv.Atoi(stats.Deletes)
			return hits >= 5 && sets >= 5 && deletes >= 3
		})
		if stats.Keys != "2" || stats.HitRatio <= 0 || stats.HitRatio >= 1 {
			t.Errorf("stats: got %+v, want keys 2 (bin, q/1), 0 < hit ratio < 1", stats)
		}
		out = ok(t, a, "cache", "stats")
		if field(t, out, "keys") != "2" || field(t, out, "degraded") != "false" {
			t.Errorf("stats table: got\n%s\nwant keys 2, degraded false", out)
		}
	})

	t.Run("exit codes", func(t *testing.T) {
		r := ctl(t, a, "", "limits", "check", "k", "--policy", "nope")
		if r.code != 1 || r.stdout != "" || !strings.HasPrefix(r.stderr, `resilctl: NOT_FOUND: policy: no limit named "nope"`) {
			t.Errorf("unknown policy: got %+v, want exit 1 and resilctl: NOT_FOUND: policy: no limit named \"nope\"...", r)
		}
		r = ctl(t, a, "", "limits", "check", "k", "--max-calls", "0", "--window", "1s")
		if r.code != 1 || !strings.HasPrefix(r.stderr, "resilctl: INVALID_ARGUMENT: ") {
			t.Errorf("max_calls 0: got %+v, want exit 1 and INVALID_ARGUMENT", r)
		}
		r = ctl(t, a, "", "breakers", "get", strings.Repeat("n", 300))
		if r.code != 1 || !strings.HasPrefix(r.stderr, "resilctl: INVALID_ARGUMENT: breaker") {
			t.Errorf("breaker name too long: got %+v, want exit 1 and INVALID_ARGUMENT naming breaker", r)
		}
		for _, args := range [][]string{{"breakers", "frob"}, {"cache", "get"}, {"--nope", "cache", "stats"}, {"limits", "check", "k"}} {
			r = ctl(t, a, "", args...)
			if r.code != 2 || !strings.Contains(r.stderr, "usage: resilctl") {
				t.Errorf("resilctl %q: got %+v, want exit 2 and a usage line", args, r)
			}
		}
		for _, args := range [][]string{{"help"}, {"breakers", "watch", "--help"}, {"cache", "set", "--help"}, {"limits", "check", "--help"}} {
			r = ctl(t, a, "", args...)
			if r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: resilctl") {
				t.Errorf("resilctl %q: got %+v, want exit 0 and help on stdout", args, r)
			}
		}
		// --addr wins over RESILIENCE_ADDR; the correlation id reaches the server's log.
		r = ctl(t, "127.0.0.1:1", "", "--addr", a, "--correlation-id", "resilctl-test-7", "cache", "stats")
		if r.code != 0 {
			t.Fatalf("--addr over RESILIENCE_ADDR: got %+v, want exit 0", r)
		}
		eventually(t, 5*time.Second, "correlation id resilctl-test-7 in the server's log", func() bool {
			for _, l := range f.replicas[0].LogLines() {
				if l["correlation_id"] == "resilctl-test-7" && l["grpc.method"] != nil {
					return true
				}
			}
			return false
		})
		r = ctl(t, "127.0.0.1:1", "", "--timeout", "3s", "cache", "stats")
		if r.code != 1 || !strings.HasPrefix(r.stderr, "resilctl: UNAVAILABLE: ") {
			t.Errorf("unreachable RESILIENCE_ADDR: got %+v, want exit 1 and UNAVAILABLE", r)
		}
	})
}

// watchProc is a running "resilctl breakers watch".
type watchProc struct {
	cmd    *exec.Cmd
	lines  chan string // stdout lines; closed at EOF
	stderr *bytes.Buffer
	exited chan error
}

// startWatch starts resilctl args against addr and waits until it says the
// watch is in place. The process is killed when the test ends.
func startWatch(t *testing.T, addr string, args ...string) *watchProc {
	t.Helper()
	cmd := ctlCommand(context.Background(), addr, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderrPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	w := &watchProc{cmd: cmd, lines: make(chan string, 16), stderr: &bytes.Buffer{}, exited: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	readDone := make(chan struct{}, 2)
	go func() {
		defer func() { readDone <- struct{}{} }()
		sc := bufio.NewScanner(stderrPipe)
		for sc.Scan() {
			w.stderr.WriteString(sc.Text() + "\n") // read only after exit
			if strings.Contains(sc.Text(), "resilctl: watching") {
				ready <- sc.Text()
			}
		}
	}()
	go func() {
		defer func() { readDone <- struct{}{} }()
		defer close(w.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
	}()
	go func() {
		<-readDone // Wait closes the pipes: read them to the end first
		<-readDone
		w.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		for range w.lines { // drain
		}
	})
	select {
	case <-ready:
	case <-time.After(15 * time.Second):
		t.Fatalf("resilctl %q: not watching after 15s", args)
	}
	return w
}

// next returns the next line printed, failing after 10s.
func (w *watchProc) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-w.lines:
		if !ok {
			t.Fatalf("watch ended before printing an event")
		}
		return l
	case <-time.After(10 * time.Second):
		t.Fatalf("no watch event within 10s")
	}
	return ""
}

// interrupt sends SIGINT and checks the watch exits 0 without more output.
func (w *watchProc) interrupt(t *testing.T) {
	t.Helper()
	if err := w.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var extra []string
	for l := range w.lines {
		extra = append(extra, l)
	}
	select {
	case err := <-w.exited:
		if err != nil {
			t.Errorf("watch after SIGINT: got %v, want exit status 0; stderr %q", err, w.stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("watch still running 10s after SIGINT")
	}
	if len(extra) > 0 {
		t.Errorf("watch printed unexpected events %q (a breaker outside its prefix?)", extra)
	}
}
