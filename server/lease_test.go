package server

import (
	"testing"

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
