package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// runJSON runs the whole tool with args plus --output json and decodes the
// report it printed (empty when it printed none).
func runJSON(t *testing.T, ctx context.Context, args ...string) (report, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(ctx, append(args, "--output", "json"), &stdout, &stderr)
	var rep report
	if stdout.Len() > 0 {
		if jerr := json.Unmarshal(stdout.Bytes(), &rep); jerr != nil {
			t.Fatalf("output is not a JSON report: %v\n%s", jerr, stdout.String())
		}
	}
	return rep, err
}

// mustRun runs resilbench with args under t's context, fails t if the run
// fails, and returns its JSON report.
func mustRun(t *testing.T, args ...string) report {
	t.Helper()
	rep, err := runJSON(t, t.Context(), args...)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return rep
}

// checkConsistent checks the invariants of every run result: calls add up
// over codes, errors are the calls not OK, the OK answers add up over the
// exclusive outcomes, throughput is positive and the latencies ordered.
func checkConsistent(t *testing.T, r *runResult) {
	t.Helper()
	var sum uint64
	for _, n := range r.Codes {
		sum += n
	}
	if sum != r.Calls {
		t.Errorf("%s: sum over codes %v: got %d, want calls %d", r.RPC, r.Codes, sum, r.Calls)
	}
	if got, want := r.Errors, r.Calls-r.Codes["OK"]; got != want {
		t.Errorf("%s: errors: got %d, want calls - OK = %d", r.RPC, got, want)
	}
	if r.Calls == 0 || r.Throughput <= 0 || r.ElapsedSeconds <= 0 {
		t.Errorf("%s: got calls %d, throughput %v, elapsed %vs; want all > 0", r.RPC, r.Calls, r.Throughput, r.ElapsedSeconds)
	}
	if got, want := r.Throughput, float64(r.Calls)/r.ElapsedSeconds; got < want*0.999 || got > want*1.001 {
		t.Errorf("%s: throughput: got %v, want calls/elapsed = %v", r.RPC, got, want)
	}
	l := r.Latency
	ordered := []float64{l.Min, l.P50, l.P90, l.P99, l.P999, l.Max}
	for i := 1; i < len(ordered); i++ {
		if ordered[i] < ordered[i-1] {
			t.Errorf("%s: latencies min, p50, p90, p99, p99.9, max = %v: not ordered", r.RPC, ordered)
			break
		}
	}
	if l.Mean < l.Min || l.Mean > l.Max || l.Min <= 0 {
		t.Errorf("%s: got mean %v, min %v, max %v; want 0 < min <= mean <= max", r.RPC, l.Mean, l.Min, l.Max)
	}
	// The first two outcomes of every RPC exclude each other and cover
	// every OK answer (allowed/denied, hit/miss, stored/not_stored,
	// serving/not_serving).
	exclusive := map[string][2]string{
		"health":          {"serving", "not_serving"},
		"acquire":         {"allowed", "denied"},
		"acquire-denied":  {"allowed", "denied"},
		"acquire-breaker": {"allowed", "denied"},
		"cache-get":       {"hit", "miss"},
		"cache-set":       {"stored", "not_stored"},
	}[r.RPC]
	if got, want := r.Outcomes[exclusive[0]]+r.Outcomes[exclusive[1]], r.Codes["OK"]; got != want {
		t.Errorf("%s: %s + %s: got %d, want the OK calls %d (outcomes %v)", r.RPC, exclusive[0], exclusive[1], got, want, r.Outcomes)
	}
}

func TestRunHealthOneSecond(t *testing.T) {
	f := startFake(t, fakeOptions{})
	rep := mustRun(t, "--addr", f.addr, "--rpc", "health",
		"--concurrency", "8", "--conns", "3", "--duration", "1s", "--warmup", "200ms")
	if len(rep.Runs) != 1 || rep.Compare != nil {
		t.Fatalf("got %d runs and compare %v, want 1 run and no compare", len(rep.Runs), rep.Compare)
	}
	r := rep.Runs[0]
	checkConsistent(t, r)
	if r.Errors != 0 || r.Outcomes["serving"] != r.Calls {
		t.Errorf("got errors %d, serving %d of %d calls; want no errors, all serving", r.Errors, r.Outcomes["serving"], r.Calls)
	}
	if r.RPC != "health" || r.Addr != f.addr || r.Concurrency != 8 || r.Conns != 3 || r.DurationSeconds != 1 || r.WarmupSeconds != 0.2 || r.Interrupted {
		t.Errorf("settings: got %+v", r)
	}
	// Measuring stops at --duration: the elapsed time is the duration plus
	// at most the tail of the calls in flight (a loose bound: the machine
	// is shared).
	if r.ElapsedSeconds < 1 || r.ElapsedSeconds > 5 {
		t.Errorf("elapsed: got %vs, want 1s plus the last calls", r.ElapsedSeconds)
	}
}

func TestRunTargets(t *testing.T) {
	const keys = 7
	tests := []struct {
		rpc          string
		wantOutcome  string // every call answered this way...
		allButOne    bool   // ...or every call but (at most) one
		wantKeys     int    // distinct keys the server saw
		wantBreakers int
	}{
		{rpc: "acquire", wantOutcome: "allowed", wantKeys: keys},
		{rpc: "acquire-denied", wantOutcome: "denied", allButOne: true, wantKeys: 1},
		{rpc: "acquire-breaker", wantOutcome: "allowed", wantKeys: keys, wantBreakers: keys},
		{rpc: "cache-get", wantOutcome: "hit", wantKeys: keys},
		{rpc: "cache-set", wantOutcome: "stored", wantKeys: keys},
	}
	for _, tt := range tests {
		t.Run(tt.rpc, func(t *testing.T) {
			f := startFake(t, fakeOptions{})
			rep := mustRun(t, "--addr", f.addr, "--rpc", tt.rpc, "--keys", "7",
				"--concurrency", "4", "--conns", "2", "--duration", "300ms", "--warmup", "0s")
			if len(rep.Runs) != 1 {
				t.Fatalf("got %d runs, want 1", len(rep.Runs))
			}
			r := rep.Runs[0]
			checkConsistent(t, r)
			if r.RPC != tt.rpc || r.Errors != 0 {
				t.Errorf("got rpc %q with %d errors (%v), want %q without errors", r.RPC, r.Errors, r.ErrorSamples, tt.rpc)
			}
			got, want := r.Outcomes[tt.wantOutcome], r.Calls
			if tt.allButOne && got == want-1 {
				got = want
			}
			if got != want {
				t.Errorf("%s: got %d of %d calls (outcomes %v)", tt.wantOutcome, got, r.Calls, r.Outcomes)
			}
			_, gotKeys, gotBreakers, gotPeers := f.snapshot()
			if gotKeys != tt.wantKeys || gotBreakers != tt.wantBreakers {
				t.Errorf("server saw %d keys and %d breakers, want %d and %d", gotKeys, gotBreakers, tt.wantKeys, tt.wantBreakers)
			}
			if gotPeers != 2 {
				t.Errorf("server saw calls from %d connections, want --conns 2", gotPeers)
			}
		})
	}
}

func TestRunCompare(t *testing.T) {
	f := startFake(t, fakeOptions{})
	rep := mustRun(t, "--addr", f.addr, "--compare", "--rpc", "acquire",
		"--concurrency", "4", "--duration", "300ms", "--warmup", "100ms")
	if len(rep.Runs) != 2 || rep.Runs[0].RPC != "health" || rep.Runs[1].RPC != "acquire" {
		t.Fatalf("got runs %v, want health then acquire", rep.Runs)
	}
	for _, r := range rep.Runs {
		checkConsistent(t, r)
	}
	c := rep.Compare
	if c == nil {
		t.Fatal("got no compare, want one")
	}
	h, a := rep.Runs[0], rep.Runs[1]
	if c.Baseline != "health" || c.RPC != "acquire" {
		t.Errorf("compare: got %q / %q, want acquire / health", c.RPC, c.Baseline)
	}
	if want := a.Throughput / h.Throughput; c.ThroughputRatio != want {
		t.Errorf("throughput ratio: got %v, want %v", c.ThroughputRatio, want)
	}
	if want := a.Latency.P99 / h.Latency.P99; c.P99Ratio != want {
		t.Errorf("p99 ratio: got %v, want %v", c.P99Ratio, want)
	}
	wantMet := c.ThroughputRatio >= 0.6 && c.P99Ratio <= 2
	if c.GoalThroughputRatio != 0.6 || c.GoalP99Ratio != 2 || c.GoalMet != wantMet {
		t.Errorf("goals: got %+v, want 0.6, 2 and met %v", c, wantMet)
	}
}

func TestRunTextOutput(t *testing.T) {
	f := startFake(t, fakeOptions{})
	var stdout bytes.Buffer
	err := run(t.Context(), []string{"--addr", f.addr, "--compare", "--rpc", "acquire-breaker",
		"--concurrency", "2", "--duration", "200ms", "--warmup", "0s"}, &stdout, io.Discard)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	out := stdout.String()
	for _, want := range []string{
		"rpc health  addr " + f.addr + "  concurrency 2  conns 2  keys 100",
		"rpc acquire-breaker  addr ",
		"throughput   ", " calls/s",
		"latency ms   p50 ", " p99.9 ",
		"codes        OK ",
		"outcomes     serving ",
		"outcomes     allowed ", "  denied 0  degraded 0",
		"compare acquire-breaker / health",
		"throughput ratio  ", "(goal >= 0.60: ",
		"p99 ratio         ", "(goal <= 2.00: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
}

func TestRunEveryCallFailed(t *testing.T) {
	// The server answers health but not Acquire (UNIMPLEMENTED): the report
	// is printed and run fails.
	f := startFake(t, fakeOptions{noResilience: true})
	rep, err := runJSON(t, t.Context(), "--addr", f.addr, "--rpc", "acquire",
		"--concurrency", "2", "--duration", "200ms", "--warmup", "0s")
	if !errors.Is(err, errAllFailed) || !strings.Contains(err.Error(), "UNIMPLEMENTED") {
		t.Fatalf("run: got %v, want errAllFailed naming UNIMPLEMENTED", err)
	}
	if exitCode(err) != 1 {
		t.Errorf("exit code: got %d, want 1", exitCode(err))
	}
	if len(rep.Runs) != 1 {
		t.Fatalf("got %d runs, want the report printed anyway", len(rep.Runs))
	}
	r := rep.Runs[0]
	checkConsistent(t, r)
	if r.Codes["UNIMPLEMENTED"] != r.Calls || r.Errors != r.Calls || r.Outcomes["allowed"] != 0 {
		t.Errorf("got codes %v, errors %d, outcomes %v of %d calls; want all UNIMPLEMENTED", r.Codes, r.Errors, r.Outcomes, r.Calls)
	}
	if !strings.Contains(r.ErrorSamples["UNIMPLEMENTED"], "Acquire") {
		t.Errorf("error samples: got %v, want the UNIMPLEMENTED message", r.ErrorSamples)
	}
}

func TestRunWarmupNotMeasured(t *testing.T) {
	f := startFake(t, fakeOptions{})
	rep := mustRun(t, "--addr", f.addr, "--rpc", "acquire",
		"--concurrency", "2", "--duration", "300ms", "--warmup", "300ms")
	served, _, _, _ := f.snapshot()
	if got := rep.Runs[0].Calls; got == 0 || uint64(served) <= got {
		t.Errorf("measured %d calls, server served %d: want the warmup calls served but not measured", got, served)
	}
}

func TestRunInterrupted(t *testing.T) {
	f := startFake(t, fakeOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	timer := time.AfterFunc(300*time.Millisecond, cancel)
	defer timer.Stop()
	start := time.Now()
	rep, err := runJSON(t, ctx, "--addr", f.addr, "--compare", "--rpc", "acquire",
		"--concurrency", "4", "--duration", "30s", "--warmup", "0s")
	if !errors.Is(err, errInterrupted) || exitCode(err) != 130 {
		t.Fatalf("run: got %v (exit %d), want errInterrupted (exit 130)", err, exitCode(err))
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("run took %v after Ctrl-C at 300ms, want it to stop at once", d)
	}
	if len(rep.Runs) != 1 || rep.Compare != nil {
		t.Fatalf("got %d runs, compare %v: want only the interrupted health run", len(rep.Runs), rep.Compare)
	}
	r := rep.Runs[0]
	checkConsistent(t, r)
	if !r.Interrupted || r.Errors != 0 {
		t.Errorf("got interrupted %v with %d errors (%v), want interrupted without errors: cancelled calls are not server errors", r.Interrupted, r.Errors, r.Codes)
	}
}

func TestRunUnreachable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	var stdout bytes.Buffer
	err = run(t.Context(), []string{"--addr", addr, "--duration", "1s", "--timeout", "2s"}, &stdout, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "cannot reach "+addr) {
		t.Errorf("run: got %v, want cannot reach %s", err, addr)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout: got %q, want nothing", stdout.String())
	}
}

func TestParseFlags(t *testing.T) {
	c, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	want := config{addr: "127.0.0.1:50051", rpc: "health", concurrency: 64, conns: 4, keys: 100,
		duration: 10 * time.Second, warmup: 2 * time.Second, timeout: 5 * time.Second,
		output: "text", baseline: "health", redisAddr: "127.0.0.1:6379", valueSize: 64, keyPrefix: "resilbench/"}
	if c != want {
		t.Errorf("defaults: got %+v, want %+v", c, want)
	}
	for _, args := range [][]string{
		{"--addr", "[::1]:50051"},
		{"--addr", "localhost:50051"},
		{"--addr", "127.0.0.2:1"},
		{"--addr", "unix:///tmp/resilienced.sock"},
		{"--addr", "10.1.2.3:50051", "--allow-remote"},
		{"--rpc", "cache-set", "--output", "json", "--warmup", "0s", "--compare"},
	} {
		if _, err := parseFlags(args, io.Discard); err != nil {
			t.Errorf("parseFlags(%q): got %v, want nil", args, err)
		}
	}
	if _, err := parseFlags([]string{"--help"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: got %v, want flag.ErrHelp", err)
	}
}

func TestRunUsageErrors(t *testing.T) {
	// Usage errors come before any connection: none of these addresses is
	// ever dialled.
	for _, args := range [][]string{
		{"--nope"},
		{"extra"},
		{"--rpc", "acquire-everything"},
		{"--concurrency", "0"},
		{"--conns", "0"},
		{"--keys", "0"},
		{"--duration", "0s"},
		{"--warmup", "-1s"},
		{"--timeout", "0s"},
		{"--output", "xml"},
		{"--value-size", "-1"},
		{"--key-prefix", strings.Repeat("k", 201)},
		{"--addr", "127.0.0.1"},
		{"--addr", "10.1.2.3:50051"},
		{"--addr", "example.com:50051"},
	} {
		err := run(t.Context(), args, io.Discard, io.Discard)
		if !errors.Is(err, errUsage) || exitCode(err) != 2 {
			t.Errorf("run(%q): got %v (exit %d), want a usage error (exit 2)", args, err, exitCode(err))
		}
	}
}

func TestConnsCappedAtConcurrency(t *testing.T) {
	f := startFake(t, fakeOptions{})
	rep := mustRun(t, "--addr", f.addr, "--rpc", "cache-set",
		"--concurrency", "2", "--conns", "8", "--duration", "200ms", "--warmup", "0s")
	if got := rep.Runs[0].Conns; got != 2 {
		t.Errorf("conns: got %d, want 2 (capped at --concurrency)", got)
	}
	if _, _, _, peers := f.snapshot(); peers != 2 {
		t.Errorf("server saw %d connections, want 2", peers)
	}
}
