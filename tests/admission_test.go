package tests

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/internal/testkit"
)

// TestMultiAllOrNothingFleet: a pair of limits where one is empty charges
// neither, as seen from another replica.
func TestMultiAllOrNothingFleet(t *testing.T) {
	f := startFleet(t, 3, `
limits:
  user: {max_calls: 5, time_window: 1h}
  org: {max_calls: 1, time_window: 1h}
`)
	ctx := ctxT(t, 30*time.Second)
	if resp, err := f.rs(0).Acquire(ctx, &resiliencev1.AcquireRequest{Key: "org-42", Policy: "org"}); err != nil || !resp.GetAllowed() {
		t.Fatalf("draining org-42: %v, %v", resp, err)
	}
	pair := &resiliencev1.AcquireRequest{Key: "user-7", Policy: "user", Limits: []*resiliencev1.LimitRequest{{Key: "org-42", Policy: "org"}}}
	for i := range 6 {
		resp, err := f.rs(1).Acquire(ctx, pair)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetAllowed() || resp.GetReason() != resiliencev1.AcquireReason_ACQUIRE_REASON_RATE_LIMITED || resp.GetLimitedBy() != "org-42" || len(resp.GetLimits()) != 2 {
			t.Fatalf("pair %d: %v, want refused by org-42 with both limits explained", i, resp)
		}
		if ls := resp.GetLimits(); !ls[0].GetAllowed() || ls[1].GetAllowed() || ls[1].GetRetryAfter().AsDuration() <= 0 {
			t.Errorf("pair %d explain: %v, want user-7 admitting and org-42 refusing with a retry", i, ls)
		}
	}
	// From another replica: user-7 still has its whole burst.
	resp, err := f.rs(2).Acquire(ctx, &resiliencev1.AcquireRequest{Key: "user-7", Policy: "user", Cost: 5})
	if err != nil || !resp.GetAllowed() || resp.GetRemaining() != 0 {
		t.Fatalf("user-7's 5 tokens from replica 2: %v, %v; want allowed (the refused pairs charged nothing)", resp, err)
	}
	// Duplicate keys and too many limits are INVALID_ARGUMENT naming the field.
	dup := &resiliencev1.AcquireRequest{Key: "a", Policy: "user", Limits: []*resiliencev1.LimitRequest{{Key: "a", Policy: "org"}}}
	if _, err := f.rs(0).Acquire(ctx, dup); err == nil || !strings.Contains(err.Error(), "limits[0].key") {
		t.Errorf("duplicate key: %v, want INVALID_ARGUMENT naming limits[0].key", err)
	}
	nine := &resiliencev1.AcquireRequest{Key: "k", Policy: "user"}
	for i := range 8 {
		nine.Limits = append(nine.Limits, &resiliencev1.LimitRequest{Key: string(rune('a' + i)), Policy: "user"})
	}
	if _, err := f.rs(0).Acquire(ctx, nine); err == nil || !strings.Contains(err.Error(), "limits") {
		t.Errorf("nine limits: %v, want INVALID_ARGUMENT naming limits", err)
	}
	over := &resiliencev1.AcquireRequest{Limits: []*resiliencev1.LimitRequest{{Key: "x", Policy: "org", Cost: 2}}}
	if _, err := f.rs(0).Acquire(ctx, over); err == nil || !strings.Contains(err.Error(), "limits[0].cost") {
		t.Errorf("cost above the burst: %v, want INVALID_ARGUMENT naming limits[0].cost", err)
	}
	lease0 := &resiliencev1.AcquireRequest{Key: "x", Limit: &resiliencev1.RateLimit{MaxInFlight: 2}}
	if _, err := f.rs(0).Acquire(ctx, lease0); err == nil || !strings.Contains(err.Error(), "in_flight_lease") {
		t.Errorf("a lease of 0: %v, want INVALID_ARGUMENT naming in_flight_lease", err)
	}
}

// TestConcurrencySlotsFleet: 3 replicas x 24 callers never hold more than
// max_in_flight slots of one key.
func TestConcurrencySlotsFleet(t *testing.T) {
	const maxInFlight = 4
	f := startFleet(t, 3, `
limits:
  ado: {max_in_flight: 4, in_flight_lease: 10s}
`)
	ctx := ctxT(t, 60*time.Second)
	var inFlight testkit.Gauge
	var admitted, refused atomic.Int64
	stop := time.Now().Add(3 * time.Second)
	for _, err := range testkit.Parallel(72, func(g int) error { // 24 callers per replica
		rs := f.rs(g)
		for i := 0; i < 200 && time.Now().Before(stop); i++ {
			resp, err := rs.Acquire(ctx, &resiliencev1.AcquireRequest{Key: "ado", Policy: "ado"})
			if err != nil {
				return err
			}
			if !resp.GetAllowed() {
				refused.Add(1)
				if resp.GetReason() != resiliencev1.AcquireReason_ACQUIRE_REASON_CONCURRENCY_LIMITED {
					return fmt.Errorf("refused with %v, want CONCURRENCY_LIMITED", resp.GetReason())
				}
				continue
			}
			admitted.Add(1)
			inFlight.Enter()
			time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
			inFlight.Leave()
			// Released through any replica.
			if _, err := f.rs(rand.IntN(3)).Release(ctx, &resiliencev1.ReleaseRequest{SlotToken: resp.GetSlotToken()}); err != nil {
				return err
			}
		}
		return nil
	}) {
		t.Fatal(err)
	}
	if p := inFlight.Peak(); p > maxInFlight {
		t.Errorf("peak in flight %d, want at most %d", p, maxInFlight)
	}
	if admitted.Load() == 0 || refused.Load() == 0 {
		t.Errorf("admitted %d, refused %d: want both", admitted.Load(), refused.Load())
	}
	t.Logf("admitted %d, refused %d, peak %d", admitted.Load(), refused.Load(), inFlight.Peak())
	// Every slot was released: the dry run sees none in flight.
	resp, err := f.rs(1).Acquire(ctx, &resiliencev1.AcquireRequest{Key: "ado", Policy: "ado", DryRun: true})
	if err != nil || !resp.GetAllowed() || resp.GetLimits()[0].GetInFlight() != 0 {
		t.Errorf("after every release: %v, %v; want nothing in flight", resp, err)
	}
}

// TestConcurrencyLeaseReclaimed: slots never released are reclaimed when
// their lease ends, fleet-wide; a caller with max_wait gets a freed slot.
func TestConcurrencyLeaseReclaimed(t *testing.T) {
	f := startFleet(t, 3, `
limits:
  short: {max_in_flight: 2, in_flight_lease: 300ms}
  held: {max_in_flight: 1, in_flight_lease: 30s}
`)
	ctx := ctxT(t, 30*time.Second)
	req := &resiliencev1.AcquireRequest{Key: "k", Policy: "short"}
	for i := range 2 {
		if resp, err := f.rs(0).Acquire(ctx, req); err != nil || !resp.GetAllowed() || resp.GetSlotToken() == "" {
			t.Fatalf("slot %d: %v, %v", i, resp, err)
		}
	}
	resp, err := f.rs(1).Acquire(ctx, req)
	if err != nil || resp.GetAllowed() || resp.GetReason() != resiliencev1.AcquireReason_ACQUIRE_REASON_CONCURRENCY_LIMITED {
		t.Fatalf("third: %v, %v; want CONCURRENCY_LIMITED", resp, err)
	}
	if ra := resp.GetRetryAfter().AsDuration(); ra <= 0 || ra > 300*time.Millisecond {
		t.Errorf("retry_after %v, want within the 300ms lease", ra)
	}
	eventually(t, 5*time.Second, "the expired leases are reclaimed", func() bool {
		resp, err := f.rs(2).Acquire(ctx, req)
		return err == nil && resp.GetAllowed()
	})

	// max_wait: a caller queued on replica 1 gets the slot released
	// through replica 2.
	holder, err := f.rs(0).Acquire(ctx, &resiliencev1.AcquireRequest{Key: "q", Policy: "held"})
	if err != nil || !holder.GetAllowed() {
		t.Fatalf("holder: %v, %v", holder, err)
	}
	got := make(chan *resiliencev1.AcquireResponse, 1)
	go func() {
		resp, err := f.rs(1).Acquire(ctx, &resiliencev1.AcquireRequest{Key: "q", Policy: "held", MaxWait: durationpb.New(10 * time.Second)})
		if err != nil {
			t.Error(err)
		}
		got <- resp
	}()
	time.Sleep(100 * time.Millisecond) // let it queue (if it is late, it finds the slot free)
	if _, err := f.rs(2).ReportOutcome(ctx, &resiliencev1.ReportOutcomeRequest{SlotToken: holder.GetSlotToken()}); err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-got:
		if !resp.GetAllowed() || resp.GetSlotToken() == "" {
			t.Errorf("queued caller: %v, want the released slot", resp)
		}
	case <-ctx.Done():
		t.Fatal("queued caller never answered")
	}
}

// TestUpstreamPauseFleet: a 429 reported through one replica pauses the
// key's callers on the others for the reported time, and no longer.
func TestUpstreamPauseFleet(t *testing.T) {
	f := startFleet(t, 3, `
limits:
  ado: {max_calls: 1000, time_window: 1s}
  hourly: {max_calls: 10, time_window: 1h}
`)
	ctx := ctxT(t, 30*time.Second)
	const pause = 1500 * time.Millisecond
	sent := time.Now()
	rep, err := f.rs(0).ReportUpstream(ctx, &resiliencev1.ReportUpstreamRequest{Feedback: []*resiliencev1.UpstreamFeedback{{Key: "org-1", RetryAfter: durationpb.New(pause)}}})
	if err != nil || len(rep.GetResults()) != 1 || rep.GetResults()[0].GetPausedFor().AsDuration() != pause {
		t.Fatalf("ReportUpstream = %v, %v; want paused for %v", rep, err, pause)
	}
	req := &resiliencev1.AcquireRequest{Key: "org-1", Policy: "ado"}
	for _, i := range []int{1, 2} {
		resp, err := f.rs(i).Acquire(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetAllowed() {
			if time.Since(sent) < pause {
				t.Fatalf("replica %d admitted a call during the pause", i)
			}
			continue
		}
		if resp.GetReason() != resiliencev1.AcquireReason_ACQUIRE_REASON_UPSTREAM_THROTTLED || resp.GetRetryAfter().AsDuration() > pause || resp.GetRetryAfter().AsDuration() <= 0 {
			t.Errorf("replica %d: %v, want UPSTREAM_THROTTLED with retry_after within %v", i, resp, pause)
		}
	}
	// Another key of the same limit is not paused.
	if resp, err := f.rs(1).Acquire(ctx, &resiliencev1.AcquireRequest{Key: "org-2", Policy: "ado"}); err != nil || !resp.GetAllowed() {
		t.Errorf("org-2: %v, %v; want allowed", resp, err)
	}
	// No longer than reported: admitted once the pause is over (never
	// before it).
	eventually(t, pause+5*time.Second, "org-1 admitted after the pause", func() bool {
		resp, err := f.rs(2).Acquire(ctx, req)
		if err == nil && resp.GetAllowed() && time.Since(sent) < pause {
			t.Fatal("admitted before the pause was over")
		}
		return err == nil && resp.GetAllowed()
	})

	// A pause longer than the maximum is cut to 15 minutes; a report
	// through ReportOutcome (no breaker) counts the same.
	out, err := f.rs(1).ReportOutcome(ctx, &resiliencev1.ReportOutcomeRequest{Upstream: []*resiliencev1.UpstreamFeedback{{Key: "org-3", RetryAfter: durationpb.New(365 * 24 * time.Hour)}}})
	if err != nil || !out.GetUpstream()[0].GetClamped() || out.GetUpstream()[0].GetPausedFor().AsDuration() > 15*time.Minute {
		t.Fatalf("a year's pause: %v, %v; want clamped to 15m", out, err)
	}
	// remaining lowers the bucket, never raises it.
	up := &resiliencev1.UpstreamFeedback{Key: "org-4", Policy: "hourly", Remaining: proto.Int64(2)}
	if rep, err := f.rs(0).ReportUpstream(ctx, &resiliencev1.ReportUpstreamRequest{Feedback: []*resiliencev1.UpstreamFeedback{up}}); err != nil || rep.GetResults()[0].GetRemaining() > 2 {
		t.Fatalf("remaining 2: %v, %v", rep, err)
	}
	up.Remaining = proto.Int64(8)
	if rep, err := f.rs(1).ReportUpstream(ctx, &resiliencev1.ReportUpstreamRequest{Feedback: []*resiliencev1.UpstreamFeedback{up}}); err != nil || rep.GetResults()[0].GetRemaining() != 2 {
		t.Fatalf("remaining 8 after 2: %v, %v; want still 2 (never raised)", rep, err)
	}
	for i := range 3 {
		resp, err := f.rs(2).Acquire(ctx, &resiliencev1.AcquireRequest{Key: "org-4", Policy: "hourly"})
		if err != nil || resp.GetAllowed() != (i < 2) {
			t.Errorf("org-4 call %d after remaining 2: %v, %v; want allowed for the first two only", i, resp, err)
		}
	}
}

// TestShadowNeverDenies: a limit and a breaker in shadow mode never refuse
// and are metered with the shadow label.
func TestShadowNeverDenies(t *testing.T) {
	f := startFleet(t, 3, `
limits:
  trial: {max_calls: 1, time_window: 1h, shadow: true}
breakers:
  trial: {failure_threshold: 1, recovery_timeout: 1h, shadow: true}
`)
	ctx := ctxT(t, 30*time.Second)
	shadowed := 0
	for i := range 30 {
		resp, err := f.rs(i).Acquire(ctx, &resiliencev1.AcquireRequest{Key: "k", Policy: "trial"})
		if err != nil {
			t.Fatal(err)
		}
		if !resp.GetAllowed() {
			t.Fatalf("call %d refused by a shadow limit: %v", i, resp)
		}
		if resp.GetShadowReason() == resiliencev1.AcquireReason_ACQUIRE_REASON_RATE_LIMITED {
			shadowed++
		}
	}
	if shadowed != 29 {
		t.Errorf("%d calls marked as shadow-refused, want 29", shadowed)
	}
	if _, err := f.rs(0).ReportOutcome(ctx, &resiliencev1.ReportOutcomeRequest{Breaker: "trial", Outcome: resiliencev1.Outcome_OUTCOME_FAILURE}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the open shadow breaker is reported", func() bool {
		resp, err := f.rs(1).Acquire(ctx, &resiliencev1.AcquireRequest{Breaker: "trial"})
		if err == nil && !resp.GetAllowed() {
			t.Fatalf("refused by a shadow breaker: %v", resp)
		}
		return err == nil && resp.GetShadowReason() == resiliencev1.AcquireReason_ACQUIRE_REASON_CIRCUIT_OPEN
	})
	_, body := httpGet(t, "http://"+f.replicas[0].metricsAddr+"/metrics")
	if !strings.Contains(body, `shadow="rate_limited"`) {
		t.Errorf("/metrics has no shadow=\"rate_limited\" sample:\n%s", grepLines(body, "resilience_acquire_total"))
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
