package server

import (
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

// TestHostileInput holds the hostile requests of the reliability report:
// each one is INVALID_ARGUMENT naming its field with a message that says
// what is allowed, never a silent default and never a degraded answer.
func TestHostileInput(t *testing.T) {
	env := startServer(t, nil)
	rc := resiliencev1.NewResilienceServiceClient(env.conn)
	cc := resiliencev1.NewCacheServiceClient(env.conn)
	years := func(n int64) *durationpb.Duration { return &durationpb.Duration{Seconds: n * 365 * 24 * 3600} }

	t.Run("10000-year window", func(t *testing.T) {
		_, err := rc.Acquire(ctxT(t), &resiliencev1.AcquireRequest{Key: "k", Limit: &resiliencev1.RateLimit{MaxCalls: 1, TimeWindow: years(10000)}})
		wantInvalid(t, err, "limit.time_window")
		if msg := err.Error(); strings.Contains(msg, "microseconds") || !strings.Contains(msg, "at most") {
			t.Errorf("got %q, want it to say the largest window allowed, not blame microseconds", msg)
		}
	})
	t.Run("300-year ttl", func(t *testing.T) {
		_, err := cc.Set(ctxT(t), &resiliencev1.SetRequest{Key: "k", Value: []byte("v"), Ttl: years(300)})
		wantInvalid(t, err, "ttl")
	})
	t.Run("200-year ttl", func(t *testing.T) {
		_, err := cc.Set(ctxT(t), &resiliencev1.SetRequest{Key: "k", Value: []byte("v"), Ttl: years(200)})
		wantInvalid(t, err, "ttl")
		if !strings.Contains(err.Error(), "at most") {
			t.Errorf("got %q, want the maximum TTL named", err)
		}
	})
	t.Run("ten-year ttl is fine", func(t *testing.T) {
		resp, err := cc.Set(ctxT(t), &resiliencev1.SetRequest{Key: "k", Value: []byte("v"), Ttl: years(10)})
		if err != nil || !resp.GetStored() {
			t.Fatalf("Set with a 10-year ttl: got %v, %v; want stored", resp, err)
		}
		got, err := cc.Get(ctxT(t), &resiliencev1.GetRequest{Key: "k"})
		if err != nil || got.GetTtl().AsDuration() <= 9*365*24*time.Hour {
			t.Errorf("Get: got %v, %v; want a TTL of about 10 years (never none)", got, err)
		}
	})
	for _, p := range []string{"[", "abc[", `x\`} {
		t.Run("pattern "+p, func(t *testing.T) {
			_, err := cc.DeletePattern(ctxT(t), &resiliencev1.DeletePatternRequest{Pattern: p})
			wantInvalid(t, err, "pattern")
		})
	}
	t.Run("pattern of 1000 bytes is the cache's to allow", func(t *testing.T) {
		_, err := cc.DeletePattern(ctxT(t), &resiliencev1.DeletePatternRequest{Pattern: strings.Repeat("a", 1000) + "*"})
		if err != nil {
			t.Errorf("DeletePattern of 1001 bytes (the cache allows 1024): got %v", err)
		}
	})
	for _, g := range []uint64{1 << 63, 1<<63 + 1, math.MaxUint64} {
		t.Run("generation", func(t *testing.T) {
			resp, err := rc.ReportOutcome(ctxT(t), &resiliencev1.ReportOutcomeRequest{Breaker: "hostile-gen", Outcome: resiliencev1.Outcome_OUTCOME_FAILURE, BreakerGeneration: g})
			if err != nil || resp.GetDegraded() || !resp.GetIgnored() {
				t.Fatalf("breaker_generation %d: got %v, %v; want ignored as stale, never degraded with a healthy store", g, resp, err)
			}
		})
	}
	for _, p := range []string{"local:", "local:abc", "local:00:1.1"} {
		t.Run("permit "+p, func(t *testing.T) {
			resp, err := rc.ReportOutcome(ctxT(t), &resiliencev1.ReportOutcomeRequest{Breaker: "hostile-permit", Outcome: resiliencev1.Outcome_OUTCOME_FAILURE, PermitId: p})
			if resp.GetDegraded() {
				t.Fatalf("permit_id %q: answered degraded with a healthy store", p)
			}
			if err != nil {
				wantInvalid(t, err, "permit_id")
			}
		})
	}
	// Many forged failure reports never open the breaker for real callers.
	for i := 0; i < 10; i++ {
		_, _ = rc.ReportOutcome(ctxT(t), &resiliencev1.ReportOutcomeRequest{Breaker: "hostile-permit", Outcome: resiliencev1.Outcome_OUTCOME_FAILURE, PermitId: "local:abc", BreakerGeneration: 1 << 63})
	}
	resp, err := rc.Acquire(ctxT(t), &resiliencev1.AcquireRequest{Breaker: "hostile-permit"})
	if err != nil || !resp.GetAllowed() || resp.GetDegraded() {
		t.Errorf("Acquire after forged local reports: got %v, %v; want allowed, not degraded", resp, err)
	}
}
