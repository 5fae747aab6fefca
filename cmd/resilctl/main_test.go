package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// run runs a command line on a Main with captured streams and returns
// stdout, stderr and the exit status.
func run(t *testing.T, env map[string]string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	m := &Main{Stdin: strings.NewReader(stdin), Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return env[k] }}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := m.ExitCode(m.Run(ctx, args))
	return stdout.String(), stderr.String(), code
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		min, max int
		wantPos  []string
		wantFlag string
		wantErr  string // substring; "" means no error
	}{
		{name: "flags first", args: []string{"--prefix", "p", "a"}, min: 1, max: 1, wantPos: []string{"a"}, wantFlag: "p"},
		{name: "flags last", args: []string{"a", "--prefix=p"}, min: 1, max: 1, wantPos: []string{"a"}, wantFlag: "p"},
		{name: "interleaved", args: []string{"a", "--prefix", "p", "b"}, min: 2, max: 2, wantPos: []string{"a", "b"}, wantFlag: "p"},
		{name: "double dash ends flags", args: []string{"a", "--", "--prefix", "-x"}, min: 0, max: -1, wantPos: []string{"a", "--prefix", "-x"}},
		{name: "stdin dash is positional", args: []string{"k", "-"}, min: 2, max: 2, wantPos: []string{"k", "-"}},
		{name: "any number", args: []string{"a", "b", "c"}, min: 1, max: -1, wantPos: []string{"a", "b", "c"}},
		{name: "missing", args: nil, min: 1, max: 1, wantErr: "missing NAME"},
		{name: "extra", args: []string{"a", "b"}, min: 1, max: 1, wantErr: `unexpected arguments ["b"]`},
		{name: "unknown flag", args: []string{"a", "--nope"}, min: 1, max: 1, wantErr: "flag provided but not defined: -nope"},
		{name: "flag without value", args: []string{"a", "--prefix"}, min: 1, max: 1, wantErr: "flag needs an argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFlagSet("x")
			prefix := fs.String("prefix", "", "")
			var out bytes.Buffer
			pos, err := parseArgs(breakersGet, fs, &out, tt.args, tt.min, tt.max, "NAME")
			if tt.wantErr != "" {
				var ue *usageError
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.As(err, &ue) {
					t.Fatalf("got error %v, want a usage error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if got, want := pos, tt.wantPos; !slices.Equal(got, want) {
				t.Errorf("positional args: got %q, want %q", got, want)
			}
			if *prefix != tt.wantFlag {
				t.Errorf("--prefix: got %q, want %q", *prefix, tt.wantFlag)
			}
		})
	}
}

func TestParseCheck(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    *resiliencev1.AcquireRequest
		wantErr string
	}{
		{
			name: "policy",
			args: []string{"org-42", "--policy", "ado", "--cost", "3"},
			want: &resiliencev1.AcquireRequest{Key: "org-42", Policy: "ado", Cost: 3, DryRun: true},
		},
		{
			name: "inline",
			args: []string{"--max-calls", "10", "--window", "1m", "--burst", "4", "k"},
			want: &resiliencev1.AcquireRequest{Key: "k", Limit: &resiliencev1.RateLimit{MaxCalls: 10, TimeWindow: durationpb.New(time.Minute), Burst: 4}, DryRun: true},
		},
		{
			name: "inline zero values are the server's to judge",
			args: []string{"k", "--max-calls", "0", "--window", "0s"},
			want: &resiliencev1.AcquireRequest{Key: "k", Limit: &resiliencev1.RateLimit{TimeWindow: durationpb.New(0)}, DryRun: true},
		},
		{name: "no limit", args: []string{"k"}, wantErr: "missing --policy NAME or --max-calls N --window D"},
		{name: "both", args: []string{"k", "--policy", "p", "--window", "1s"}, wantErr: "exclude each other"},
		{name: "no window", args: []string{"k", "--max-calls", "5"}, wantErr: "missing --window"},
		{name: "no max-calls", args: []string{"k", "--window", "1s", "--burst", "2"}, wantErr: "missing --max-calls"},
		{name: "no key", args: []string{"--policy", "p"}, wantErr: "missing KEY"},
		{name: "bad duration", args: []string{"k", "--max-calls", "1", "--window", "soon"}, wantErr: "invalid value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCheck(&bytes.Buffer{}, tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if !proto.Equal(got, tt.want) {
				t.Errorf("request: got %v, want %v", got, tt.want)
			}
		})
	}
}

// Bad command lines exit 2 with the message and a usage line on stderr,
// before anything is dialled (--addr points nowhere).
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args      []string
		wantErr   string
		wantUsage string
	}{
		{nil, "resilctl: missing command", "usage: resilctl [global flags] COMMAND"},
		{[]string{"frobnicate"}, `resilctl: unknown command "frobnicate"`, "usage: resilctl [global flags] COMMAND"},
		{[]string{"--nope", "cache", "stats"}, "flag provided but not defined: -nope", "usage: resilctl [global flags] COMMAND"},
		{[]string{"--output", "yaml", "cache", "stats"}, `--output "yaml": want table or json`, "usage: resilctl"},
		{[]string{"--timeout", "0s", "cache", "stats"}, "--timeout 0s: must be > 0", "usage: resilctl"},
		{[]string{"--correlation-id", "a b\x01", "cache", "stats"}, "--correlation-id", "usage: resilctl"},
		{[]string{"breakers"}, "breakers: missing command (list, get, watch, reset)", "usage: resilctl [global flags] breakers COMMAND"},
		{[]string{"breakers", "explode"}, `breakers: unknown command "explode"`, "usage: resilctl [global flags] breakers COMMAND"},
		{[]string{"breakers", "get"}, "breakers get: missing NAME", "usage: resilctl [global flags] breakers get NAME"},
		{[]string{"breakers", "get", "a", "b"}, `unexpected arguments ["b"]`, "usage: resilctl [global flags] breakers get NAME"},
		{[]string{"breakers", "list", "--prefix"}, "flag needs an argument", "usage: resilctl [global flags] breakers list"},
		{[]string{"breakers", "reset", "x", "--half-open"}, "flag provided but not defined: -half-open", "breakers reset NAME [--open]"},
		{[]string{"breakers", "watch", "extra"}, `unexpected arguments ["extra"]`, "breakers watch [--prefix P]"},
		{[]string{"limits", "check", "k"}, "missing --policy NAME", "limits check KEY (--policy NAME"},
		{[]string{"limits"}, "limits: missing command (check)", "usage: resilctl [global flags] limits COMMAND"},
		{[]string{"cache", "set", "k"}, `missing VALUE (got KEY ["k"])`, "cache set KEY VALUE [--ttl D]"},
		{[]string{"cache", "set"}, "missing KEY and VALUE", "cache set KEY VALUE [--ttl D]"},
		{[]string{"cache", "set", "k", "v", "--ttl", "forever"}, "invalid value", "cache set KEY VALUE"},
		{[]string{"cache", "del"}, "missing KEY", "cache del KEY..."},
		{[]string{"cache", "delete-pattern"}, "missing PATTERN", "cache delete-pattern PATTERN"},
		{[]string{"cache", "stats", "now"}, `unexpected arguments ["now"]`, "cache stats"},
		{[]string{"cache", "get", "k", "--raw=maybe"}, "invalid boolean value", "cache get KEY [--raw]"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			stdout, stderr, code := run(t, nil, "", append([]string{"--addr", "127.0.0.1:1"}, tt.args...)...)
			if code != 2 {
				t.Errorf("exit status: got %d, want 2", code)
			}
			if !strings.Contains(stderr, tt.wantErr) || !strings.Contains(stderr, tt.wantUsage) {
				t.Errorf("stderr: got %q, want it to contain %q and %q", stderr, tt.wantErr, tt.wantUsage)
			}
			if stdout != "" {
				t.Errorf("stdout: got %q, want nothing", stdout)
			}
		})
	}
}

// --help on every command, and help COMMAND, print help on stdout and exit 0.
func TestHelp(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--help"}, "Usage: resilctl [global flags] COMMAND"},
		{[]string{"-h"}, "Global flags:"},
		{[]string{"help"}, "limits check KEY"},
		{[]string{"help", "cache"}, "Usage: resilctl [global flags] cache COMMAND"},
		{[]string{"help", "cache", "set"}, "Usage: resilctl [global flags] cache set KEY VALUE [--ttl D]"},
		{[]string{"breakers", "--help"}, "breakers watch [--prefix P]"},
		{[]string{"breakers", "help"}, "breakers reset NAME [--open]"},
		{[]string{"breakers", "list", "--help"}, "--page-size int"},
		{[]string{"breakers", "get", "--help"}, "Usage: resilctl [global flags] breakers get NAME"},
		{[]string{"breakers", "watch", "-h"}, "--prefix P"},
		{[]string{"breakers", "reset", "x", "--help"}, "--open"},
		{[]string{"limits", "--help"}, "limits check KEY"},
		{[]string{"limits", "check", "--help"}, "--max-calls int"},
		{[]string{"cache", "--help"}, "cache delete-pattern PATTERN"},
		{[]string{"cache", "get", "--help"}, "--raw"},
		{[]string{"cache", "set", "--help"}, "--ttl duration"},
		{[]string{"cache", "del", "--help"}, "Usage: resilctl [global flags] cache del KEY..."},
		{[]string{"cache", "delete-pattern", "--help"}, "glob"},
		{[]string{"cache", "stats", "--help"}, "Usage: resilctl [global flags] cache stats"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			stdout, stderr, code := run(t, nil, "", tt.args...)
			if code != 0 {
				t.Errorf("exit status: got %d, want 0 (stderr %q)", code, stderr)
			}
			if !strings.Contains(stdout, tt.want) {
				t.Errorf("stdout: got %q, want it to contain %q", stdout, tt.want)
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{status.Error(codes.NotFound, `policy: no limit named "x"`), `NOT_FOUND: policy: no limit named "x"`},
		{status.Error(codes.InvalidArgument, "key: too long"), "INVALID_ARGUMENT: key: too long"},
		{status.Error(codes.Canceled, "context canceled"), "CANCELLED: context canceled"},
		{status.Error(codes.Code(99), "odd"), "CODE(99): odd"},
		{context.DeadlineExceeded, "context deadline exceeded"},
	}
	for _, tt := range tests {
		if got := errorText(tt.err); got != tt.want {
			t.Errorf("errorText(%v): got %q, want %q", tt.err, got, tt.want)
		}
	}
	var stderr bytes.Buffer
	m := &Main{Stderr: &stderr}
	if code := m.ExitCode(status.Error(codes.Unavailable, "down")); code != 1 || stderr.String() != "resilctl: UNAVAILABLE: down\n" {
		t.Errorf("ExitCode(UNAVAILABLE): got %d and %q, want 1 and %q", code, stderr.String(), "resilctl: UNAVAILABLE: down\n")
	}
	if code := m.ExitCode(flag.ErrHelp); code != 0 {
		t.Errorf("ExitCode(ErrHelp): got %d, want 0", code)
	}
}

// An unreachable server is a failed RPC: exit 1, UNAVAILABLE on stderr.
func TestUnreachableServer(t *testing.T) {
	_, stderr, code := run(t, map[string]string{addrEnv: "127.0.0.1:1"}, "", "--timeout", "3s", "cache", "stats")
	if code != 1 || !strings.HasPrefix(stderr, "resilctl: UNAVAILABLE: ") {
		t.Errorf("got exit %d, stderr %q; want 1 and resilctl: UNAVAILABLE: ...", code, stderr)
	}
}

// The JSON output is the proto3 mapping with proto names and every field,
// byte-stable (protojson's random whitespace is normalised).
func TestJSONStable(t *testing.T) {
	resp := &resiliencev1.AcquireResponse{Allowed: true, Reason: resiliencev1.AcquireReason_ACQUIRE_REASON_ALLOWED, Remaining: 7, ResetAfter: durationpb.New(1500 * time.Millisecond)}
	var a, b bytes.Buffer
	if err := writeJSON(&a, resp); err != nil {
		t.Fatal(err)
	}
	if err := writeJSON(&b, resp); err != nil {
		t.Fatal(err)
	}
	want := `{
  "allowed": true,
  "reason": "ACQUIRE_REASON_ALLOWED",
  "remaining": "7",
  "retry_after": null,
  "reset_after": "1.500s",
  "breaker_state": "CIRCUIT_STATE_UNSPECIFIED",
  "permit_id": "",
  "degraded": false,
  "waited": null,
  "breaker_generation": "0",
  "limits": [],
  "limited_by": "",
  "slot_token": "",
  "shadow_reason": "ACQUIRE_REASON_UNSPECIFIED"
}
`
	if got := a.String(); got != want {
		t.Errorf("JSON: got\n%s\nwant\n%s", got, want)
	}
	if a.String() != b.String() {
		t.Errorf("JSON not stable: %q then %q", a.String(), b.String())
	}
	var line bytes.Buffer
	if err := writeJSONLine(&line, &resiliencev1.BreakerEvent{Breaker: "ado", Generation: 3}); err != nil {
		t.Fatal(err)
	}
	if got := line.String(); strings.Count(got, "\n") != 1 || !strings.HasSuffix(got, "\n") || !json.Valid([]byte(got)) {
		t.Errorf("JSON line: got %q, want one line of valid JSON", got)
	}
}
