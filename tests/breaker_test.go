package tests

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/internal/testkit"
)

const breakerConfig = `
breakers:
  default:
    failure_threshold: 3
    recovery_timeout: 500ms
    half_open_max_calls: 2
    probe_timeout: 700ms
`

func fail(gen uint64) *resiliencev1.ReportOutcomeRequest {
	return &resiliencev1.ReportOutcomeRequest{Breaker: "ado", Outcome: resiliencev1.Outcome_OUTCOME_FAILURE, BreakerGeneration: gen}
}

var acquireADO = &resiliencev1.AcquireRequest{Breaker: "ado"}

// The whole breaker life cycle across three replicas: failures reported
// through one replica open it for all; after recovery_timeout exactly
// half_open_max_calls concurrent probes are admitted fleet-wide; a lost probe
// is reclaimed; stale outcomes are ignored; a watcher on one replica sees the
// transitions made on others.
func TestBreakerAcrossReplicas(t *testing.T) {
	f := startFleet(t, 3, breakerConfig)
	ctx := ctxT(t, 30*time.Second)

	events := watchBreakers(t, ctx, f.rs(2), "ad")
	wantEvent := func(from, to resiliencev1.CircuitState) *resiliencev1.BreakerEvent {
		t.Helper()
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatalf("watch ended, want %v -> %v", from, to)
			}
			if e.GetBreaker() != "ado" || e.GetFrom() != from || e.GetTo() != to {
				t.Fatalf("event: got %v, want ado %v -> %v", e, from, to)
			}
			return e
		case <-time.After(5 * time.Second):
			t.Fatalf("no event %v -> %v within 5s", from, to)
		}
		return nil
	}

	// Every replica admits while CLOSED and learns the generation.
	var gen uint64
	for i := 0; i < 3; i++ {
		resp, err := f.rs(i).Acquire(ctx, acquireADO)
		if err != nil || !resp.GetAllowed() || resp.GetBreakerState() != resiliencev1.CircuitState_CIRCUIT_STATE_CLOSED {
			t.Fatalf("replica %d while CLOSED: %v, %v", i, resp, err)
		}
		gen = resp.GetBreakerGeneration()
	}
	for i := 0; i < 3; i++ {
		if _, err := f.rs(0).ReportOutcome(ctx, fail(gen)); err != nil {
			t.Fatal(err)
		}
	}
	opened := wantEvent(resiliencev1.CircuitState_CIRCUIT_STATE_CLOSED, resiliencev1.CircuitState_CIRCUIT_STATE_OPEN)
	for i := 1; i < 3; i++ {
		eventually(t, 2*time.Second, "replica still admits after the breaker opened elsewhere", func() bool {
			resp, err := f.rs(i).Acquire(ctx, acquireADO)
			return err == nil && !resp.GetAllowed() && resp.GetReason() == resiliencev1.AcquireReason_ACQUIRE_REASON_CIRCUIT_OPEN
		})
	}
	// A late failure from the closed generation is ignored.
	if r, err := f.rs(1).ReportOutcome(ctx, fail(gen)); err != nil || !r.GetIgnored() {
		t.Errorf("stale outcome: got %v, %v; want ignored", r, err)
	}

	// After recovery_timeout, 30 concurrent callers on 3 replicas: exactly
	// half_open_max_calls (2) probes.
	time.Sleep(time.Until(opened.GetAt().AsTime().Add(550 * time.Millisecond)))
	var (
		probes  atomic.Int64
		permits sync.Map
	)
	for _, err := range testkit.Parallel(30, func(g int) error {
		resp, err := f.rs(g).Acquire(ctx, acquireADO)
		if err != nil {
			return err
		}
		if resp.GetAllowed() {
			probes.Add(1)
			permits.Store(resp.GetPermitId(), resp.GetBreakerGeneration())
		}
		return nil
	}) {
		t.Error(err)
	}
	if got := probes.Load(); got != 2 {
		t.Fatalf("concurrent Acquires in HALF_OPEN admitted %d probes, want exactly 2", got)
	}
	wantEvent(resiliencev1.CircuitState_CIRCUIT_STATE_OPEN, resiliencev1.CircuitState_CIRCUIT_STATE_HALF_OPEN)

	// Both probes are lost (never reported): after probe_timeout their
	// slots come back.
	eventually(t, 3*time.Second, "lost probes never reclaimed", func() bool {
		resp, err := f.rs(1).Acquire(ctx, acquireADO)
		if err == nil && resp.GetAllowed() {
			permits.Store(resp.GetPermitId(), resp.GetBreakerGeneration())
			return resp.GetPermitId() != ""
		}
		return false
	})
	// The fresh probe succeeds and closes the breaker (success_threshold 1).
	var lastPermit string
	var lastGen uint64
	permits.Range(func(k, v any) bool {
		lastPermit, lastGen = k.(string), v.(uint64)
		return true
	})
	// Report every permit we hold: the expired ones are ignored, the live one counts.
	closedBy := ""
	permits.Range(func(k, v any) bool {
		r, err := f.rs(2).ReportOutcome(ctx, &resiliencev1.ReportOutcomeRequest{Breaker: "ado", Outcome: resiliencev1.Outcome_OUTCOME_SUCCESS, PermitId: k.(string), BreakerGeneration: v.(uint64)})
		if err != nil {
			t.Fatal(err)
		}
		if !r.GetIgnored() && r.GetState() == resiliencev1.CircuitState_CIRCUIT_STATE_CLOSED {
			closedBy = k.(string)
		}
		return true
	})
	if closedBy == "" {
		t.Fatalf("no probe success closed the breaker (last permit %s gen %d)", lastPermit, lastGen)
	}
	// The same permit counts once.
	if r, err := f.rs(0).ReportOutcome(ctx, &resiliencev1.ReportOutcomeRequest{Breaker: "ado", Outcome: resiliencev1.Outcome_OUTCOME_FAILURE, PermitId: closedBy, BreakerGeneration: lastGen}); err != nil || !r.GetIgnored() {
		t.Errorf("second report of permit %s: got %v, %v; want ignored", closedBy, r, err)
	}
	wantEvent(resiliencev1.CircuitState_CIRCUIT_STATE_HALF_OPEN, resiliencev1.CircuitState_CIRCUIT_STATE_CLOSED)

	st, err := f.rs(1).BreakerState(ctx, &resiliencev1.BreakerStateRequest{Breaker: "ado"})
	if err != nil {
		t.Fatal(err)
	}
	if s := st.GetStatus(); s.GetState() != resiliencev1.CircuitState_CIRCUIT_STATE_CLOSED || s.GetPolicy().GetHalfOpenMaxCalls() != 2 || s.GetOpenedAt() == nil {
		t.Errorf("status: got %v", s)
	}
	// ResetBreaker on one replica is visible to the watcher on another.
	if _, err := f.rs(0).ResetBreaker(ctx, &resiliencev1.ResetBreakerRequest{Breaker: "ado", State: resiliencev1.CircuitState_CIRCUIT_STATE_OPEN}); err != nil {
		t.Fatal(err)
	}
	if e := wantEvent(resiliencev1.CircuitState_CIRCUIT_STATE_CLOSED, resiliencev1.CircuitState_CIRCUIT_STATE_OPEN); e.GetReason() != "reset" {
		t.Errorf("reset event reason: got %q, want reset", e.GetReason())
	}
	list, err := f.rs(2).ListBreakers(ctx, &resiliencev1.ListBreakersRequest{})
	if err != nil || len(list.GetBreakers()) != 1 || list.GetBreakers()[0].GetState() != resiliencev1.CircuitState_CIRCUIT_STATE_OPEN {
		t.Errorf("list: got %v, %v; want ado OPEN", list, err)
	}
}

// With Redis down, breakers fall back per replica and never report OPEN
// because of the outage; the shared state is used again when Redis returns.
func TestBreakerRedisOutage(t *testing.T) {
	f := startFleet(t, 2, breakerConfig)
	ctx := ctxT(t, 30*time.Second)
	if resp, err := f.rs(0).Acquire(ctx, acquireADO); err != nil || !resp.GetAllowed() || resp.GetDegraded() {
		t.Fatalf("before the outage: %v, %v", resp, err)
	}
	f.redis.Kill()
	for i := 0; i < 2; i++ {
		eventually(t, 5*time.Second, "no degraded answer with Redis down", func() bool {
			t0 := time.Now()
			resp, err := f.rs(i).Acquire(ctx, acquireADO)
			if d := time.Since(t0); d > time.Second {
				t.Errorf("Acquire took %s with Redis down", d)
			}
			if err != nil {
				t.Fatalf("Acquire with Redis down: %v, want a degraded answer", err)
			}
			if !resp.GetAllowed() {
				t.Fatalf("Acquire with Redis down: %v, want allowed (the upstream did not fail)", resp)
			}
			return resp.GetDegraded()
		})
	}
	if _, err := f.rs(0).ResetBreaker(ctx, &resiliencev1.ResetBreakerRequest{Breaker: "ado"}); err == nil {
		t.Errorf("ResetBreaker with Redis down: got success, want an error (the shared state was not changed)")
	}
	f.redis.Restart()
	for i := 0; i < 2; i++ {
		eventually(t, 10*time.Second, "still degraded after Redis came back", func() bool {
			resp, err := f.rs(i).Acquire(ctx, acquireADO)
			return err == nil && resp.GetAllowed() && !resp.GetDegraded()
		})
	}
	// The shared breaker works again: failures through one replica open it
	// for the other.
	resp, _ := f.rs(0).Acquire(ctx, acquireADO)
	for i := 0; i < 3; i++ {
		if _, err := f.rs(0).ReportOutcome(context.Background(), fail(resp.GetBreakerGeneration())); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 3*time.Second, "breaker did not open fleet-wide after Redis came back", func() bool {
		r, err := f.rs(1).Acquire(ctx, acquireADO)
		return err == nil && r.GetReason() == resiliencev1.AcquireReason_ACQUIRE_REASON_CIRCUIT_OPEN && !r.GetDegraded()
	})
}
