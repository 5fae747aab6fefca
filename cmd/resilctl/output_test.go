package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

var (
	t0     = time.Date(2026, 8, 20, 10, 0, 0, 123_000_000, time.UTC)
	policy = &resiliencev1.BreakerPolicy{
		Name: "default", Mode: "consecutive", FailureThreshold: 5,
		RecoveryTimeout: durationpb.New(30 * time.Second), HalfOpenMaxCalls: 1,
		SuccessThreshold: 1, ProbeTimeout: durationpb.New(10 * time.Second),
	}
)

func TestBreakerTable(t *testing.T) {
	sts := []*resiliencev1.BreakerStatus{
		{Name: "azure-devops", State: resiliencev1.CircuitState_CIRCUIT_STATE_OPEN, ConsecutiveFailures: 5, Generation: 12,
			OpenedAt: timestamppb.New(t0), NextProbeAt: timestamppb.New(t0.Add(30 * time.Second)), Policy: policy},
		{Name: "gh", State: resiliencev1.CircuitState_CIRCUIT_STATE_HALF_OPEN, Generation: 3, ProbesInFlight: 1, Policy: policy},
	}
	var out bytes.Buffer
	if err := writeBreakerTable(&out, sts); err != nil {
		t.Fatal(err)
	}
	want := `NAME          STATE      FAILURES  GENERATION  PROBES  OPENED AT                 NEXT PROBE AT             POLICY
azure-devops  OPEN       5         12          0       2026-08-20T10:00:00.123Z  2026-08-20T10:00:30.123Z  default
gh            HALF_OPEN  0         3           1       -                         -                         default
`
	if got := out.String(); got != want {
		t.Errorf("table: got\n%s\nwant\n%s", got, want)
	}
}

func TestBreakerRows(t *testing.T) {
	st := &resiliencev1.BreakerStatus{Name: "ado", State: resiliencev1.CircuitState_CIRCUIT_STATE_CLOSED, ConsecutiveFailures: 2, Generation: 4, Policy: policy}
	var out bytes.Buffer
	if err := writeKV(&out, breakerRows(st)); err != nil {
		t.Fatal(err)
	}
	want := `name                   ado
state                  CLOSED
generation             4
consecutive failures   2
probes in flight       0
opened at              -
next probe at          -
degraded               false
policy                 default
  mode                 consecutive
  failure threshold    5
  recovery timeout     30s
  half-open max calls  1
  success threshold    1
  probe timeout        10s
`
	if got := out.String(); got != want {
		t.Errorf("rows: got\n%s\nwant\n%s", got, want)
	}

	// failure_rate mode shows its window and thresholds instead.
	fr := &resiliencev1.BreakerStatus{Name: "fr", WindowCalls: 20, WindowFailures: 9, Policy: &resiliencev1.BreakerPolicy{
		Name: "fr", Mode: "failure_rate", FailureRateThreshold: 0.5, Window: durationpb.New(time.Minute), MinimumCalls: 10,
	}}
	got := map[string]string{}
	for _, r := range breakerRows(fr) {
		got[strings.TrimSpace(r.k)] = r.v
	}
	for k, v := range map[string]string{"window calls": "20", "window failures": "9", "failure rate threshold": "0.5", "window": "1m0s", "minimum calls": "10"} {
		if got[k] != v {
			t.Errorf("failure_rate row %q: got %q, want %q", k, got[k], v)
		}
	}
	if _, ok := got["failure threshold"]; ok {
		t.Errorf("failure_rate rows: got a failure threshold row, want none")
	}
}

func TestEventLine(t *testing.T) {
	e := &resiliencev1.BreakerEvent{Breaker: "ado", From: resiliencev1.CircuitState_CIRCUIT_STATE_CLOSED, To: resiliencev1.CircuitState_CIRCUIT_STATE_OPEN,
		At: timestamppb.New(t0), Reason: "failure_threshold", Generation: 4}
	want := "2026-08-20T10:00:00.123Z  ado  CLOSED -> OPEN  reason=failure_threshold  generation=4"
	if got := eventLine(e); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestValueText(t *testing.T) {
	tests := []struct {
		in   []byte
		want string
	}{
		{[]byte("hello world"), "hello world"},
		{[]byte("héllo ✓"), "héllo ✓"},
		{[]byte{0, 1, 'a'}, `"\x00\x01a"`},
		{[]byte("two\nlines"), `"two\nlines"`},
		{[]byte{0xff, 0xfe}, `"\xff\xfe"`},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := valueText(tt.in); got != tt.want {
			t.Errorf("valueText(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestKVRows(t *testing.T) {
	var out bytes.Buffer
	acq := &resiliencev1.AcquireResponse{Reason: resiliencev1.AcquireReason_ACQUIRE_REASON_RATE_LIMITED, RetryAfter: durationpb.New(1234567 * time.Microsecond)}
	if err := writeKV(&out, acquireRows("org-42", acq)); err != nil {
		t.Fatal(err)
	}
	want := `key          org-42
allowed      false
reason       RATE_LIMITED
remaining    0
retry after  1.235s
reset after  -
degraded     false
`
	if got := out.String(); got != want {
		t.Errorf("limits check rows: got\n%s\nwant\n%s", got, want)
	}

	out.Reset()
	get := &resiliencev1.GetResponse{Found: true, Value: []byte("v"), Ttl: durationpb.New(90 * time.Second)}
	if err := writeKV(&out, getRows("k", get)); err != nil {
		t.Fatal(err)
	}
	want = "key       k\nfound     true\nvalue     v\nsize      1 bytes\nttl       1m30s\ndegraded  false\n"
	if got := out.String(); got != want {
		t.Errorf("cache get rows: got\n%s\nwant\n%s", got, want)
	}

	out.Reset()
	if err := writeKV(&out, getRows("k", &resiliencev1.GetResponse{})); err != nil {
		t.Fatal(err)
	}
	want = "key       k\nfound     false\ndegraded  false\n"
	if got := out.String(); got != want {
		t.Errorf("cache miss rows: got\n%s\nwant\n%s", got, want)
	}

	out.Reset()
	if err := writeKV(&out, statsRows(&resiliencev1.GetStatsResponse{Hits: 3, Misses: 1, HitRatio: 0.75, Keys: 9})); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "hit ratio  0.750\n") || !strings.Contains(out.String(), "keys       9\n") {
		t.Errorf("stats rows: got %q, want hit ratio 0.750 and keys 9 aligned", out.String())
	}
}
