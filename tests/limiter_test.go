package tests

import (
	"context"
	"sort"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

const limiterConfig = `
limits:
  shared:
    max_calls: 100
    time_window: 1s
    burst: 20
  strict:
    max_calls: 1000
    time_window: 1s
    on_store_failure: deny
  lenient:
    max_calls: 1000
    time_window: 1s
`

// Three replicas, many callers, one key: the fleet admits at most
// burst + rate*t and, with a steady flood, close to it.
func TestLimiterExactAcrossReplicas(t *testing.T) {
	f := startFleet(t, 3, limiterConfig)
	// Policy "shared": 100 per second, burst 20; 24 callers over 3 replicas.
	floodOneKey(t, f.rs, "azure-devops/org-1", "shared", 20, 100, 24, 2*time.Second)
}

// Reservations are first come, first served across replicas: each caller's
// wait is longer than the previous caller's, and none overtakes another.
func TestMaxWaitOrderAcrossReplicas(t *testing.T) {
	f := startFleet(t, 3, "")
	lim := &resiliencev1.RateLimit{MaxCalls: 10, TimeWindow: durationpb.New(time.Second), Burst: 1} // one token per 100ms
	ctx := ctxT(t, 10*time.Second)
	if resp, err := f.rs(0).Acquire(ctx, &resiliencev1.AcquireRequest{Key: "q", Limit: lim}); err != nil || !resp.GetAllowed() {
		t.Fatalf("first call: %v, %v", resp, err)
	}
	type done struct {
		i      int
		sent   time.Time
		waited time.Duration
		at     time.Time
	}
	results := make(chan done, 4)
	for i := 0; i < 4; i++ {
		go func(i int) {
			sent := time.Now()
			resp, err := f.rs(i).Acquire(ctx, &resiliencev1.AcquireRequest{Key: "q", Limit: lim, MaxWait: durationpb.New(2 * time.Second)})
			if err != nil || !resp.GetAllowed() {
				t.Errorf("caller %d: %v, %v; want allowed after a wait", i, resp, err)
			}
			results <- done{i, sent, resp.GetWaited().AsDuration(), time.Now()}
		}(i)
		time.Sleep(15 * time.Millisecond) // arrive in order 0, 1, 2, 3
	}
	var got []done
	for i := 0; i < 4; i++ {
		got = append(got, <-results)
	}
	// Reservations queue: each caller holds its own token slot, one
	// emission interval (100ms) after the previous reservation, so the
	// reserved instants (request sent + waited) are spaced by ~100ms, and
	// callers are released in that order: nobody overtakes a caller who
	// reserved earlier. (Which caller reaches Redis first is up to the
	// network and the scheduler, so the test orders by reservation.)
	sort.Slice(got, func(a, b int) bool { return got[a].sent.Add(got[a].waited).Before(got[b].sent.Add(got[b].waited)) })
	for i := 1; i < len(got); i++ {
		prev, cur := got[i-1].sent.Add(got[i-1].waited), got[i].sent.Add(got[i].waited)
		if gap := cur.Sub(prev); gap < 30*time.Millisecond || gap > 170*time.Millisecond {
			t.Errorf("reservations %d and %d are %s apart, want about one token interval (100ms): %+v", i-1, i, gap, got)
		}
		if got[i].at.Before(got[i-1].at) {
			t.Errorf("caller %d (reserved later) was released before caller %d: %+v", got[i].i, got[i-1].i, got)
		}
	}
	// A fifth caller who will not wait long enough is refused at once and
	// takes nothing.
	resp, err := f.rs(1).Acquire(ctx, &resiliencev1.AcquireRequest{Key: "q", Limit: lim, MaxWait: durationpb.New(10 * time.Millisecond)})
	if err != nil || resp.GetAllowed() || resp.GetRetryAfter().AsDuration() <= 10*time.Millisecond {
		t.Errorf("impatient caller: got %v, %v; want denied with retry_after > 10ms", resp, err)
	}
}

// Redis dies during load: nothing hangs, allow_local limits answer degraded,
// deny limits answer UNAVAILABLE, never "rate limited"; when Redis returns
// the replicas use it again without a restart.
func TestLimiterRedisOutage(t *testing.T) {
	f := startFleet(t, 2, limiterConfig)
	var (
		slowest    time.Duration
		degraded   int
		unavail    int
		wrongDeny  int
		otherError []error
	)
	stop := acquireLoad(f.rs, func(policy string) string { return "outage/" + policy },
		func(_ string, start, end time.Time, resp *resiliencev1.AcquireResponse, err error) {
			slowest = max(slowest, end.Sub(start))
			switch {
			case err == nil && resp.GetDegraded():
				degraded++
			case err == nil && !resp.GetAllowed():
				wrongDeny++
			case status.Code(err) == codes.Unavailable:
				unavail++
			case err != nil:
				otherError = append(otherError, err)
			}
		})
	defer stop()
	time.Sleep(300 * time.Millisecond)
	f.redis.Kill()
	time.Sleep(1500 * time.Millisecond)
	f.redis.Restart()

	// Back to the shared store: answers stop being degraded.
	for i := range f.replicas {
		eventually(t, 10*time.Second, "replica still degraded after Redis came back", func() bool {
			resp, err := f.rs(i).Acquire(context.Background(), &resiliencev1.AcquireRequest{Key: "after", Policy: "strict"})
			return err == nil && resp.GetAllowed() && !resp.GetDegraded()
		})
	}
	stop()
	t.Logf("outage: slowest call %s, %d degraded answers, %d UNAVAILABLE", slowest, degraded, unavail)
	if degraded == 0 {
		t.Errorf("no degraded answer for the allow_local limit during the outage")
	}
	if unavail == 0 {
		t.Errorf("no UNAVAILABLE for the deny limit during the outage")
	}
	if wrongDeny > 0 {
		t.Errorf("%d calls were answered 'rate limited' (far below the limit): a store failure reported as a denial", wrongDeny)
	}
	if len(otherError) > 0 {
		t.Errorf("unexpected errors: %v", otherError[:min(3, len(otherError))])
	}
	// Generous for a loaded 2-core machine with -race; the design target
	// (250 ms) is measured in docs/benchmarks.md.
	if slowest > time.Second {
		t.Errorf("slowest Acquire took %s: calls hang while Redis is down", slowest)
	}
}
