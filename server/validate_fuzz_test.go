package server

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/topdeck/resilience/config"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/limiter"
)

// checkRejection fails when err is not nil and not a well-formed refusal:
// INVALID_ARGUMENT whose message starts with a field name, or NOT_FOUND.
func checkRejection(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	st, ok := status.FromError(err)
	switch {
	case !ok:
		t.Fatalf("got a non-status error %v", err)
	case st.Code() == codes.NotFound:
	case st.Code() != codes.InvalidArgument:
		t.Fatalf("got %v, want INVALID_ARGUMENT or NOT_FOUND", err)
	case !strings.Contains(st.Message(), ": "):
		t.Fatalf("message %q does not start with a field name", st.Message())
	}
}

// FuzzParseAcquire: no AcquireRequest makes validation panic; a refusal
// names its field; an accepted limit is one the limiter takes.
func FuzzParseAcquire(f *testing.F) {
	cfg, err := config.Parse("f.yaml", []byte("limits:\n  p:\n    max_calls: 5\n    time_window: 1s\n"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add("k", "", "", int64(10), int64(1), int32(0), int64(0), int64(1), int64(0), int32(0), false)
	f.Add("k", "p", "b", int64(0), int64(0), int32(0), int64(0), int64(6), int64(1), int32(0), true)
	f.Add("", "", "b", int64(1), int64(315360000000), int32(0), int64(0), int64(1), int64(0), int32(-5), false)
	f.Add("k", "", "", int64(1), int64(1), int32(1500), int64(1<<62), int64(1), int64(-1), int32(0), false)
	f.Fuzz(func(t *testing.T, key, policy, brk string, maxCalls, winSec int64, winNanos int32, burst, cost, waitSec int64, waitNanos int32, dry bool) {
		req := &resiliencev1.AcquireRequest{Key: key, Policy: policy, Breaker: brk, Cost: cost, DryRun: dry,
			MaxWait: &durationpb.Duration{Seconds: waitSec, Nanos: waitNanos}}
		if maxCalls != 0 || winSec != 0 || winNanos != 0 || burst != 0 {
			req.Limit = &resiliencev1.RateLimit{MaxCalls: maxCalls, TimeWindow: &durationpb.Duration{Seconds: winSec, Nanos: winNanos}, Burst: burst}
		}
		a, err := parseAcquire(cfg, req)
		checkRejection(t, err)
		if err == nil && a.key != "" {
			if verr := limiter.ValidateCall(a.limit.Limiter(), a.cost, a.maxWait); verr != nil {
				t.Fatalf("accepted %v, which the limiter refuses: %v", req, verr)
			}
		}
	})
}

// FuzzParseReport: no ReportOutcomeRequest makes validation panic, and a
// refusal names its field.
func FuzzParseReport(f *testing.F) {
	f.Add("b", int32(1), "3.1", uint64(3), int64(0), int32(0))
	f.Add("b", int32(2), "local:", uint64(1<<63), int64(-1), int32(0))
	f.Add("", int32(9), "local:abc", uint64(18446744073709551615), int64(0), int32(-1))
	f.Fuzz(func(t *testing.T, brk string, outcome int32, permit string, gen uint64, latSec int64, latNanos int32) {
		_, err := parseReport(&resiliencev1.ReportOutcomeRequest{Breaker: brk, Outcome: resiliencev1.Outcome(outcome),
			PermitId: permit, BreakerGeneration: gen, Latency: &durationpb.Duration{Seconds: latSec, Nanos: latNanos}})
		checkRejection(t, err)
	})
}

// FuzzParseList: ListBreakers' validation never panics.
func FuzzParseList(f *testing.F) {
	f.Add("p", int32(10), "tok")
	f.Add("", int32(-1), "\x00")
	f.Fuzz(func(t *testing.T, prefix string, size int32, token string) {
		_, _, _, err := parseList(&resiliencev1.ListBreakersRequest{Prefix: prefix, PageSize: size, PageToken: token})
		checkRejection(t, err)
	})
}
