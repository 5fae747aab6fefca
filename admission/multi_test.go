package admission_test

import (
	"context"
	"testing"
	"time"

	"github.com/topdeck/resilience/admission"
	"github.com/topdeck/resilience/limiter"
)

func TestMultiAllOrNothing(t *testing.T) {
	e := newEnv(t)
	mustDecide(t, e.adm, admission.Request{Limits: limited("org", hourly)}) // org is empty
	reqs := append(limited("user", hourly), limited("org", hourly)...)
	d := mustDecide(t, e.adm, admission.Request{Circuit: &admission.Circuit{Name: "b", Settings: settings}, Limits: reqs})
	if d.Allowed || d.Reason != admission.ReasonRateLimited || d.LimitedBy != 1 || d.RetryAfter != time.Hour || len(d.Limits) != 2 {
		t.Fatalf("got %+v, want refused by limit 1 with 1h", d)
	}
	if p := mustPeek(t, e.adm, admission.Request{Limits: limited("user", hourly)}); !p.Allowed {
		t.Errorf("user after the refused pair: %+v, want untouched (allowed)", p)
	}
	// Peek of the pair says the same, changing nothing.
	if p := mustPeek(t, e.adm, admission.Request{Limits: reqs}); p.Allowed || p.LimitedBy != 1 {
		t.Errorf("peek of the pair: %+v, want refused by limit 1", p)
	}
}

func TestShadowLimitNeverRefuses(t *testing.T) {
	e := newEnv(t)
	shadow := limited("k", hourly)
	shadow[0].Shadow = true
	for i := range 3 {
		d := mustDecide(t, e.adm, admission.Request{Limits: shadow})
		want := admission.ReasonAllowed
		if i > 0 {
			want = admission.ReasonRateLimited
		}
		if !d.Allowed || d.ShadowReason != want {
			t.Errorf("call %d: %+v, want allowed with shadow reason %v", i, d, want)
		}
	}
	// In a pair, the shadow limit neither refuses nor blocks the other.
	pair := append(limited("other", hourly), shadow...)
	if d := mustDecide(t, e.adm, admission.Request{Limits: pair}); !d.Allowed || d.ShadowReason != admission.ReasonRateLimited {
		t.Errorf("pair with an empty shadow limit: %+v, want allowed, shadow rate_limited", d)
	}
}

func TestShadowBreaker(t *testing.T) {
	e := newEnv(t)
	e.open(t, "b")
	c := &admission.Circuit{Name: "b", Settings: settings, Shadow: true}
	d := mustDecide(t, e.adm, admission.Request{Circuit: c, Limits: limited("k", hourly)})
	if !d.Allowed || d.ShadowReason != admission.ReasonCircuitOpen || d.Breaker.PermitID != "" || d.Limit.Remaining != 0 {
		t.Fatalf("open shadow breaker: %+v, want allowed, shadow circuit_open, the limit charged", d)
	}
	if p := mustPeek(t, e.adm, admission.Request{Circuit: c}); !p.Allowed || p.ShadowReason != admission.ReasonCircuitOpen {
		t.Errorf("peek: %+v, want allowed with shadow circuit_open", p)
	}
}

func TestUpstreamPauseReason(t *testing.T) {
	e := newEnv(t)
	if _, err := e.limits.Pause(ctxT(t), "k", limiter.Feedback{RetryAfter: 30 * time.Second}, limiter.AllowLocal); err != nil {
		t.Fatal(err)
	}
	d := mustDecide(t, e.adm, admission.Request{Limits: limited("k", hourly)})
	if d.Allowed || d.Reason != admission.ReasonUpstreamThrottled || d.RetryAfter != 30*time.Second {
		t.Fatalf("paused key: %+v, want upstream_throttled for 30s", d)
	}
	e.clk.Advance(30 * time.Second)
	if d := mustDecide(t, e.adm, admission.Request{Limits: limited("k", hourly)}); !d.Allowed {
		t.Errorf("after the pause: %+v, want allowed", d)
	}
}

func TestConcurrencySlot(t *testing.T) {
	e := newEnv(t)
	req := admission.Request{Limits: []limiter.Request{{Key: "k", Cost: 1, Slots: limiter.Slots{MaxInFlight: 1, Lease: time.Minute}}}}
	d := mustDecide(t, e.adm, req)
	if !d.Allowed || d.SlotID == "" || d.Limits[0].InFlight != 1 {
		t.Fatalf("first: %+v, want a slot", d)
	}
	if d2 := mustDecide(t, e.adm, req); d2.Allowed || d2.Reason != admission.ReasonConcurrencyLimited {
		t.Fatalf("second: %+v, want concurrency_limited", d2)
	}
	if n, err := e.limits.ReleaseSlots(ctxT(t), []string{"k"}, d.SlotID, false); err != nil || n != 1 {
		t.Fatalf("ReleaseSlots = %d, %v", n, err)
	}
	if d3 := mustDecide(t, e.adm, req); !d3.Allowed {
		t.Errorf("after release: %+v, want allowed", d3)
	}
}

// TestConcurrencyQueue: a caller with MaxWait gets the slot released while
// it waits or just before (the memory store's clock does not move: only the
// release frees it; the queue's order is the conformance suite's).
func TestConcurrencyQueue(t *testing.T) {
	e := newEnv(t)
	req := admission.Request{Limits: []limiter.Request{{Key: "k", Cost: 1, Slots: limiter.Slots{MaxInFlight: 1, Lease: time.Minute}}}}
	held := mustDecide(t, e.adm, req)
	done := make(chan admission.Decision, 1)
	go func() {
		r := req
		r.MaxWait = 5 * time.Second
		d, _ := e.adm.Decide(context.Background(), r)
		done <- d
	}()
	// Release once the slot is seen held.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if p := mustPeek(t, e.adm, req); p.Reason == admission.ReasonConcurrencyLimited {
			if _, err := e.limits.ReleaseSlots(ctxT(t), []string{"k"}, held.SlotID, false); err != nil {
				t.Fatal(err)
			}
			break
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case d := <-done:
		if !d.Allowed || d.SlotID == "" {
			t.Errorf("queued caller: %+v, want the released slot", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("queued caller never answered")
	}
}
