package server

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

// TestAcquireLeasedPolicy checks that a named limit's lease block reaches
// the limiter: 10 per hour with a 30-minute lease TTL keeps 5 tokens in
// reserve, so 5 calls are admitted (10 without lease mode), and a cost above
// the 5 a lease can hold is INVALID_ARGUMENT naming cost.
func TestAcquireLeasedPolicy(t *testing.T) {
	cfg := parseConfig(t, "limits:\n  hot:\n    max_calls: 10\n    time_window: 1h\n    lease:\n      max_tokens: 5\n      ttl: 30m\n")
	c := resiliencev1.NewResilienceServiceClient(startServer(t, cfg).conn)
	req := &resiliencev1.AcquireRequest{Key: "k", Policy: "hot"}
	for i := range 5 {
		if resp := mustAcquire(t, c, req); !resp.GetAllowed() || resp.GetDegraded() {
			t.Fatalf("call %d: got %v, want allowed from the lease", i, resp)
		}
	}
	if resp := mustAcquire(t, c, req); resp.GetAllowed() {
		t.Errorf("6th call: got %v, want RATE_LIMITED (the other 5 tokens are the reserve)", resp)
	}
	_, err := c.Acquire(ctxT(t), &resiliencev1.AcquireRequest{Key: "k2", Policy: "hot", Cost: 6})
	wantInvalid(t, err, "cost")
}

// TestAcquireLeasedPolicyPaused checks that an upstream pause reaches a key
// in lease mode: after ReportUpstream, the replica's next Acquire on the key
// is UPSTREAM_THROTTLED with the pause as retry_after, although its live
// lease still held tokens.
func TestAcquireLeasedPolicyPaused(t *testing.T) {
	cfg := parseConfig(t, "limits:\n  hot:\n    max_calls: 1000\n    time_window: 1s\n    lease:\n      max_tokens: 100\n      ttl: 900ms\n")
	c := resiliencev1.NewResilienceServiceClient(startServer(t, cfg).conn)
	req := &resiliencev1.AcquireRequest{Key: "k", Policy: "hot"}
	for i := range 4 { // leases of 1, 2 and 4: 3 tokens left in the live one
		if resp := mustAcquire(t, c, req); !resp.GetAllowed() {
			t.Fatalf("call %d: got %v, want allowed", i, resp)
		}
	}
	rep, err := c.ReportUpstream(ctxT(t), &resiliencev1.ReportUpstreamRequest{Feedback: []*resiliencev1.UpstreamFeedback{
		{Key: "k", RetryAfter: durationpb.New(30 * time.Second)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := rep.GetResults()[0].GetPausedFor().AsDuration(); got != 30*time.Second {
		t.Fatalf("ReportUpstream: paused for %v, want 30s", got)
	}
	resp := mustAcquire(t, c, req)
	if resp.GetAllowed() || resp.GetReason() != resiliencev1.AcquireReason_ACQUIRE_REASON_UPSTREAM_THROTTLED {
		t.Fatalf("Acquire after the pause: got %v, want UPSTREAM_THROTTLED", resp)
	}
	if got := resp.GetRetryAfter().AsDuration(); got <= 29*time.Second || got > 30*time.Second {
		t.Errorf("retry_after = %v, want the pause's remainder (about 30s)", got)
	}
}
