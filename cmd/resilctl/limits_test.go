package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

func TestParseCheckSeveralLimits(t *testing.T) {
	req, err := parseCheck(io.Discard, []string{"user-7", "--policy", "ado-user", "--and", "org-42=ado-org", "--and", "ado=ado-in-flight", "--cost", "2"})
	if err != nil {
		t.Fatal(err)
	}
	if req.GetKey() != "user-7" || req.GetPolicy() != "ado-user" || len(req.GetLimits()) != 2 || !req.GetDryRun() {
		t.Fatalf("got %v", req)
	}
	if l := req.GetLimits()[1]; l.GetKey() != "ado" || l.GetPolicy() != "ado-in-flight" || l.GetCost() != 2 {
		t.Errorf("second --and: got %v", l)
	}
	if _, err := parseCheck(io.Discard, []string{"k", "--policy", "p", "--and", "nokey"}); err == nil {
		t.Error("--and without = accepted")
	}
	req, err = parseCheck(io.Discard, []string{"k", "--max-in-flight", "20", "--in-flight-lease", "30s"})
	if err != nil {
		t.Fatal(err)
	}
	if l := req.GetLimit(); l.GetMaxInFlight() != 20 || l.GetInFlightLease().AsDuration() != 30*time.Second || l.GetTimeWindow() != nil {
		t.Errorf("inline concurrency limit: got %v", l)
	}
	if _, err := parseCheck(io.Discard, []string{"k", "--max-in-flight", "20"}); err == nil || !strings.Contains(err.Error(), "--in-flight-lease") {
		t.Errorf("--max-in-flight alone: %v, want a usage error naming --in-flight-lease", err)
	}
}

func TestAcquireRowsSeveralLimits(t *testing.T) {
	resp := &resiliencev1.AcquireResponse{Reason: resiliencev1.AcquireReason_ACQUIRE_REASON_RATE_LIMITED, LimitedBy: "org-42", Limits: []*resiliencev1.LimitDecision{
		{Key: "user-7", Allowed: true, Reason: resiliencev1.AcquireReason_ACQUIRE_REASON_ALLOWED, Remaining: 4},
		{Key: "org-42", Reason: resiliencev1.AcquireReason_ACQUIRE_REASON_RATE_LIMITED, RetryAfter: durationpb.New(time.Second)},
		{Key: "ado", Allowed: true, Reason: resiliencev1.AcquireReason_ACQUIRE_REASON_ALLOWED, InFlight: 3},
	}}
	var b strings.Builder
	for _, r := range acquireRows("user-7", resp) {
		b.WriteString(r.k + "=" + r.v + "\n")
	}
	for _, want := range []string{"limited by=org-42", "limit 1=org-42: RATE_LIMITED, remaining 0, in flight 0, retry after 1s", "limit 2=ado: ALLOWED, remaining 0, in flight 3"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("rows:\n%s\nwant a row %q", b.String(), want)
		}
	}
}
