package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/topdeck/resilience/limiter"
)

// RunLease runs the lease-mode suite against the stores newStore builds,
// which must implement limiter.Leaser: the store's lease decisions step by
// step, and fleets of Limiters (replicas) sharing one store, checked against
// a model of lease mode and against the exact bounds of the package
// documentation ("Leases").
func RunLease(t *testing.T, newStore NewStoreFunc) {
	t.Helper()
	run(t, suite{
		{"LeaseSteps", testLeaseSteps},
		{"LeaseGiveBack", testLeaseGiveBack},
		{"LeaseLimitChange", testLeaseLimitChange},
		{"LeaseReservationCancel", testLeaseReservationCancel},
		{"LeaseInvalidInput", testLeaseInvalidInput},
		{"LeasePaused", testLeasePaused},
		{"LeaseMultiKeepsReserve", testLeaseMultiKeepsReserve},
		{"FleetLocalDecisions", testFleetLocalDecisions},
		{"FleetGiveBackOnExpiry", testFleetGiveBackOnExpiry},
		{"FleetSustainedBound", testFleetSustainedBound},
		{"FleetModel", testFleetModel},
		{"FleetPause", testFleetPause},
	}, newStore)
}

// tenPerSec is the lease steps' limit: one token per 100ms, burst 10; with
// a TTL of 200ms the bucket keeps 2 tokens in reserve and lends at most 8.
var tenPerSec = limiter.Limit{MaxCalls: 10, Window: time.Second}

const leaseTTL = 200 * ms

// leaseStep is one Lease call: advance the clock, pause the key for pause
// when it is set, then Lease and compare the grant. giveBackOf >= 1 gives
// back giveTokens of the lease of step giveBackOf-1. TAT and Reservation are
// checked to be set when they must be and then left out of the comparison.
type leaseStep struct {
	advance    time.Duration
	pause      time.Duration
	key        string // default "k"
	lim        limiter.Limit
	req        limiter.LeaseRequest // TTL default leaseTTL; Cost default Need
	giveBackOf int
	giveTokens int64
	want       limiter.LeaseGrant
}

func lent(tokens, remaining int64, reset time.Duration) limiter.LeaseGrant {
	return limiter.LeaseGrant{Result: limiter.Result{Allowed: true, Remaining: remaining, ResetAfter: reset}, Tokens: tokens}
}

func refused(remaining int64, retry, reset time.Duration) limiter.LeaseGrant {
	return limiter.LeaseGrant{Result: limiter.Result{Remaining: remaining, RetryAfter: retry, ResetAfter: reset}}
}

func gaveBack(g limiter.LeaseGrant) limiter.LeaseGrant { g.GaveBack = true; return g }

func runLeaseSteps(t *testing.T, newStore NewStoreFunc, steps []leaseStep) []limiter.LeaseGrant {
	t.Helper()
	clock := NewClock(start)
	store := newStore(t, clock.Now)
	s := as[limiter.Leaser](t, store)
	grants := make([]limiter.LeaseGrant, len(steps))
	for i, st := range steps {
		clock.Advance(st.advance)
		key, lim, req := st.key, st.lim, st.req
		if key == "" {
			key = "k"
		}
		if lim == (limiter.Limit{}) {
			lim = tenPerSec
		}
		if req.TTL == 0 {
			req.TTL = leaseTTL
		}
		if req.Cost == 0 {
			req.Cost = req.Need
		}
		if st.pause > 0 {
			if _, err := as[limiter.Pauser](t, store).Pause(context.Background(), key, limiter.Limit{}, st.pause, -1); err != nil {
				t.Fatalf("step %d: Pause(%q, %v): %v", i, key, st.pause, err)
			}
		}
		if st.giveBackOf > 0 {
			g := grants[st.giveBackOf-1]
			req.GiveBack = limiter.LeaseReturn{TAT: g.TAT, TATRem: g.TATRem, Tokens: st.giveTokens}
		}
		got, err := s.Lease(context.Background(), key, lim, req)
		what := fmt.Sprintf("step %d: Lease(%q, %+v, %+v) at +%v", i, key, lim, req, clock.Now().Sub(start))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		grants[i] = got
		if (got.TAT == 0 && got.TATRem == 0) == got.Allowed {
			t.Errorf("%s = %+v: want a TAT exactly when allowed", what, got)
		}
		if got.Reservation.IsZero() == (got.Wait > 0) {
			t.Errorf("%s = %+v: want a Reservation exactly when Wait > 0", what, got)
		}
		got.TAT, got.TATRem, got.Reservation = 0, 0, limiter.Reservation{}
		if got != st.want {
			t.Errorf("%s:\n got %+v\nwant %+v", what, got, st.want)
		}
	}
	return grants
}

func testLeaseSteps(t *testing.T, newStore NewStoreFunc) {
	runLeaseSteps(t, newStore, []leaseStep{
		{req: limiter.LeaseRequest{Need: 1, Want: 5}, want: lent(5, 5, 500*ms)},
		// 8 lendable (2 in reserve): 3 left to lend.
		{req: limiter.LeaseRequest{Need: 1, Want: 5}, want: lent(3, 2, 800*ms)},
		// Nothing to lend: 1 is lendable in 100ms, though 2 are in the bucket.
		{req: limiter.LeaseRequest{Need: 1, Want: 5}, want: refused(2, 100*ms, 800*ms)},
		{advance: 50 * ms, req: limiter.LeaseRequest{Need: 1, Want: 5}, want: refused(2, 50*ms, 750*ms)},
		// Reserves the cost (2) when need (1) is not there: 150ms.
		{req: limiter.LeaseRequest{Need: 1, Want: 5, Cost: 2, MaxWait: 300 * ms},
			want: limiter.LeaseGrant{Result: limiter.Result{Allowed: true, Wait: 150 * ms, ResetAfter: 950 * ms}, Tokens: 2}},
		{req: limiter.LeaseRequest{Need: 1, Want: 5, Cost: 1, MaxWait: 100 * ms}, want: refused(0, 250*ms, 950*ms)},
		// Long idle: a full bucket lends its burst less the reserve.
		{advance: 2 * time.Second, req: limiter.LeaseRequest{Need: 8, Want: 8}, want: lent(8, 2, 800*ms)},
		{req: limiter.LeaseRequest{Need: 1, Want: 1}, want: refused(2, 100*ms, 800*ms)},
		{advance: 250 * ms, req: limiter.LeaseRequest{Need: 1, Want: 8}, want: lent(2, 2, 750*ms)},
		// Keys are independent.
		{key: "other", req: limiter.LeaseRequest{Need: 3, Want: 3}, want: lent(3, 7, 300*ms)},
	})
}

func testLeaseGiveBack(t *testing.T, newStore NewStoreFunc) {
	runLeaseSteps(t, newStore, []leaseStep{
		{req: limiter.LeaseRequest{Need: 1, Want: 5}, want: lent(5, 5, 500*ms)},
		// Nothing taken since step 0: 3 of its tokens go back first.
		{advance: 100 * ms, giveBackOf: 1, giveTokens: 3, req: limiter.LeaseRequest{Need: 1, Want: 1}, want: gaveBack(lent(1, 8, 200*ms))},
		// Step 0 is no longer the last lease: nothing goes back.
		{giveBackOf: 1, giveTokens: 1, req: limiter.LeaseRequest{Need: 1, Want: 1}, want: lent(1, 7, 300*ms)},
		// A full bucket has nothing to give back to.
		{advance: time.Second, giveBackOf: 3, giveTokens: 1, req: limiter.LeaseRequest{Need: 1, Want: 1}, want: lent(1, 9, 100*ms)},
		// Giving all of a lease back leaves the bucket as if it had not
		// been made.
		{key: "g", req: limiter.LeaseRequest{Need: 8, Want: 8}, want: lent(8, 2, 800*ms)},
		{key: "g", giveBackOf: 5, giveTokens: 8, req: limiter.LeaseRequest{Need: 8, Want: 8}, want: gaveBack(lent(8, 2, 800*ms))},
		// Given back but still refused: the give-back stays made.
		{key: "g", giveBackOf: 6, giveTokens: 2, req: limiter.LeaseRequest{Need: 8, Want: 8}, want: gaveBack(refused(4, 600*ms, 600*ms))},
		{key: "g", req: limiter.LeaseRequest{Need: 2, Want: 3}, want: lent(2, 2, 800*ms)},
	})
}

func testLeaseLimitChange(t *testing.T, newStore NewStoreFunc) {
	_, s := newStore.atStart(t)
	ctx := context.Background()
	perHour := limiter.Limit{MaxCalls: 1, Window: time.Hour}
	if _, err := s.Take(ctx, "k", perHour, 1, 0); err != nil {
		t.Fatal(err)
	}
	// An hour of debt under 1/hour is one token used under 10/s: 7 lendable.
	g, err := as[limiter.Leaser](t, s).Lease(ctx, "k", tenPerSec, limiter.LeaseRequest{Need: 1, Want: 8, Cost: 1, TTL: leaseTTL})
	if err != nil {
		t.Fatal(err)
	}
	if g.Tokens != 7 || g.Remaining != 2 {
		t.Errorf("Lease after a 1/hour call = %+v, want 7 tokens, 2 remaining", g)
	}
	// And the lease's state is a bucket of 10/s that Take reads as such.
	res, err := s.Take(ctx, "k", tenPerSec, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := (limiter.Result{Allowed: true, ResetAfter: time.Second}); res != want {
		t.Errorf("Take after the lease = %+v, want %+v", res, want)
	}
}

func testLeaseReservationCancel(t *testing.T, newStore NewStoreFunc) {
	_, s := newStore.atStart(t)
	ctx := context.Background()
	l := as[limiter.Leaser](t, s)
	if _, err := l.Lease(ctx, "k", tenPerSec, limiter.LeaseRequest{Need: 8, Want: 8, Cost: 8, TTL: leaseTTL}); err != nil {
		t.Fatal(err)
	}
	g, err := l.Lease(ctx, "k", tenPerSec, limiter.LeaseRequest{Need: 2, Want: 2, Cost: 2, MaxWait: time.Second, TTL: leaseTTL})
	if err != nil {
		t.Fatal(err)
	}
	if !g.Allowed || g.Wait != 200*ms {
		t.Fatalf("reservation = %+v, want allowed with Wait 200ms", g)
	}
	ok, err := as[limiter.Canceler](t, s).Cancel(ctx, "k", tenPerSec, g.Reservation)
	if err != nil || !ok {
		t.Fatalf("Cancel of the lease's reservation = (%v, %v), want (true, nil)", ok, err)
	}
	peek, err := s.Peek(ctx, "k", tenPerSec, 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := allowed(0, time.Second); peek != want {
		t.Errorf("Peek after Cancel = %+v, want %+v (2 of 10 left, as after the first lease)", peek, want)
	}
}

func testLeaseInvalidInput(t *testing.T, newStore NewStoreFunc) {
	clock := NewClock(start)
	l := as[limiter.Leaser](t, newStore(t, clock.Now))
	ok := limiter.LeaseRequest{Need: 1, Want: 2, Cost: 1, TTL: leaseTTL}
	tests := []struct {
		name  string
		lim   limiter.Limit
		edit  func(r *limiter.LeaseRequest)
		field string
	}{
		{"bad limit", limiter.Limit{}, func(r *limiter.LeaseRequest) {}, "max_calls"},
		{"need 0", tenPerSec, func(r *limiter.LeaseRequest) { r.Need = 0 }, "need"},
		{"need above want", tenPerSec, func(r *limiter.LeaseRequest) { r.Need = 3 }, "need"},
		{"want above capacity", tenPerSec, func(r *limiter.LeaseRequest) { r.Want = 9 }, "want"},
		{"cost below need", tenPerSec, func(r *limiter.LeaseRequest) { r.Need, r.Cost = 2, 1 }, "cost"},
		{"cost above capacity", tenPerSec, func(r *limiter.LeaseRequest) { r.Cost = 9 }, "cost"},
		{"no ttl", tenPerSec, func(r *limiter.LeaseRequest) { r.TTL = 0 }, "lease.ttl"},
		{"ttl too long", tenPerSec, func(r *limiter.LeaseRequest) { r.TTL = 901 * ms }, "lease.ttl"},
		{"ttl not whole µs", tenPerSec, func(r *limiter.LeaseRequest) { r.TTL = 1500 * time.Nanosecond }, "lease.ttl"},
		{"negative max_wait", tenPerSec, func(r *limiter.LeaseRequest) { r.MaxWait = -1 }, "max_wait"},
		{"bad give-back", tenPerSec, func(r *limiter.LeaseRequest) { r.GiveBack.Tokens = -1 }, "give_back"},
	}
	for _, tt := range tests {
		req := ok
		tt.edit(&req)
		_, err := l.Lease(context.Background(), "k", tt.lim, req)
		if !InvalidFor(err, tt.field) {
			t.Errorf("%s: Lease(%+v, %+v) error = %v, want an InvalidArgumentError for %s", tt.name, tt.lim, req, err, tt.field)
		}
	}
}

// testLeasePaused checks that a paused key lends nothing and reserves
// nothing, whatever its bucket holds, with RetryAfter the later of the
// pause's end and the need's return (as Take answers a paused key); that a
// give-back is still made; and that the pause ends exactly when said.
func testLeasePaused(t *testing.T, newStore NewStoreFunc) {
	paused := func(g limiter.LeaseGrant) limiter.LeaseGrant { g.Paused = true; return g }
	runLeaseSteps(t, newStore, []leaseStep{
		{req: limiter.LeaseRequest{Need: 1, Want: 5}, want: lent(5, 5, 500*ms)},
		// 5 tokens are lendable, but the key is paused: 300ms to go.
		{pause: 300 * ms, req: limiter.LeaseRequest{Need: 1, Want: 5}, want: paused(refused(5, 300*ms, 500*ms))},
		// Nor is anything reserved, whatever max_wait allows.
		{req: limiter.LeaseRequest{Need: 1, Want: 5, MaxWait: 900 * ms}, want: paused(refused(5, 300*ms, 500*ms))},
		// The bucket lacks the need for longer than the pause: the later wins.
		{req: limiter.LeaseRequest{Need: 8, Want: 8}, want: paused(refused(5, 500*ms, 500*ms))},
		// Step 0's unused tokens still go back (nothing was taken since):
		// 4 tokens of debt left at +100ms, 3 given back, 1 left.
		{advance: 100 * ms, giveBackOf: 1, giveTokens: 3, req: limiter.LeaseRequest{Need: 1, Want: 5}, want: gaveBack(paused(refused(9, 200*ms, 100*ms)))},
		// The pause ends exactly when said.
		{advance: 200*ms - us, req: limiter.LeaseRequest{Need: 1, Want: 5}, want: paused(refused(10, us, 0))},
		{advance: us, req: limiter.LeaseRequest{Need: 1, Want: 5}, want: lent(5, 5, 500*ms)},
	})
}

// testLeaseMultiKeepsReserve checks that a limit in lease mode decided
// together with other limits (TakeAll and PeekAll: one call on several keys)
// keeps the lease reserve, rate x TTL, as leases do. Without it such a call
// takes the refill the reserve holds back for leased tokens still in use,
// and the fleet admits up to rate x TTL more than the limit at once: here
// 80 leased tokens used at the end of their TTL plus 29 taken per call, 109
// in an instant from a burst of 100.
func testLeaseMultiKeepsReserve(t *testing.T, newStore NewStoreFunc) {
	clock := NewClock(start)
	s := newStore(t, clock.Now)
	ctx := context.Background()
	lim := limiter.Limit{MaxCalls: 1000, Window: time.Second, Burst: 100} // 1 per ms
	pol := limiter.LeasePolicy{MaxTokens: 80, TTL: 10 * ms}               // reserve 10
	g, err := as[limiter.Leaser](t, s).Lease(ctx, "k", lim, limiter.LeaseRequest{Need: 1, Want: 80, Cost: 1, TTL: pol.TTL})
	if err != nil || g.Tokens != 80 {
		t.Fatalf("Lease of 80 from a full bucket = %+v, %v; want 80 tokens", g, err)
	}
	// The lease's tokens may all be used up to its TTL: 1µs before it ends
	// the bucket holds 100 - 80 + 9.999 = 29 tokens, of which it lends 19
	// (10 in reserve).
	clock.Advance(pol.TTL - us)
	ms := as[limiter.MultiStore](t, s)
	reqs := []limiter.Request{
		{Key: "k", Limit: lim, Cost: 1, Lease: pol},
		{Key: "other", Limit: limiter.Limit{MaxCalls: 1000, Window: time.Second}, Cost: 1},
	}
	peek, err := ms.PeekAll(ctx, []limiter.Request{{Key: "k", Limit: lim, Cost: 20, Lease: pol}})
	if err != nil {
		t.Fatal(err)
	}
	if peek.Allowed {
		t.Errorf("PeekAll of 20 tokens = %+v, want refused: 19 can be taken with the reserve kept", peek)
	}
	admitted := 0
	for range 100 {
		res, err := ms.TakeAll(ctx, reqs, limiter.TakeAllOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Allowed {
			if res.Results[0].Allowed {
				t.Errorf("TakeAll refused = %+v, want refused by the leased limit", res)
			}
			break
		}
		admitted++
	}
	if admitted != 19 {
		t.Errorf("TakeAll with the leased limit admitted %d calls with 80 tokens leased, want 19 (the bucket's 29 less the reserve of 10); burst 100", admitted)
	}
}

// testFleetPause checks what an upstream pause does to replicas in lease
// mode: the replica it is reported through drops its live lease at once
// (its next call asks the store, which refuses it, paused); another replica
// admits from the lease it holds for at most that lease's tokens and its
// TTL, then is refused too; after the pause both are admitted again.
func testFleetPause(t *testing.T, newStore NewStoreFunc) {
	clock, s, reps := fleet(t, newStore, 2)
	lim := limiter.Limit{MaxCalls: 1000, Window: time.Second}
	pol := limiter.LeasePolicy{MaxTokens: 16, TTL: 100 * ms}
	req := limiter.Request{Key: "hot", Limit: lim, Cost: 1, Lease: pol}
	// Both replicas hold a live lease with unused tokens: leases of 1, 2
	// and 4 after 4 calls, 3 of the last one unused.
	for range 4 {
		acquire(t, reps[0], req)
		acquire(t, reps[1], req)
	}
	if _, err := reps[0].Pause(context.Background(), "hot", limiter.Feedback{RetryAfter: time.Second}, limiter.Deny); err != nil {
		t.Fatal(err)
	}
	refusedPaused := func(who string, res limiter.Result, retry time.Duration) {
		t.Helper()
		if res.Allowed || !res.Paused || res.RetryAfter != retry {
			t.Errorf("%s: %+v, want refused, paused, retry after %v", who, res, retry)
		}
	}
	before := s.leases.Load()
	refusedPaused("the reporting replica's next call", acquire(t, reps[0], req), time.Second)
	if got := s.leases.Load() - before; got != 1 {
		t.Errorf("the reporting replica's next call made %d lease round trips, want 1 (its lease was dropped)", got)
	}
	// The other replica learns of the pause when its lease runs out: it
	// admits at most the 3 tokens it holds.
	admitted := 0
	for range 10 {
		res := acquire(t, reps[1], req)
		if !res.Allowed {
			refusedPaused("the other replica, its lease used up", res, time.Second)
			break
		}
		admitted++
	}
	if admitted > 3 {
		t.Errorf("the other replica admitted %d calls after the pause, want at most the 3 its lease held", admitted)
	}
	clock.Advance(pol.TTL)
	refusedPaused("the other replica, a TTL later", acquire(t, reps[1], req), time.Second-pol.TTL)
	clock.Advance(time.Second - pol.TTL)
	for i, r := range reps {
		if res := acquire(t, r, req); !res.Allowed {
			t.Errorf("replica %d after the pause: %+v, want allowed", i, res)
		}
	}
}

// counting counts the calls that reach a store.
type counting struct {
	limiter.Store
	takes, leases atomic.Int64
}

func (c *counting) Take(ctx context.Context, key string, lim limiter.Limit, cost int64, maxWait time.Duration) (limiter.Result, error) {
	c.takes.Add(1)
	return c.Store.Take(ctx, key, lim, cost, maxWait)
}

func (c *counting) Lease(ctx context.Context, key string, lim limiter.Limit, req limiter.LeaseRequest) (limiter.LeaseGrant, error) {
	c.leases.Add(1)
	return c.Store.(limiter.Leaser).Lease(ctx, key, lim, req)
}

func (c *counting) Pause(ctx context.Context, key string, lim limiter.Limit, pause time.Duration, remaining int64) (limiter.PauseResult, error) {
	return c.Store.(limiter.Pauser).Pause(ctx, key, lim, pause, remaining)
}

func (c *counting) Cancel(ctx context.Context, key string, lim limiter.Limit, res limiter.Reservation) (bool, error) {
	return c.Store.(limiter.Canceler).Cancel(ctx, key, lim, res)
}

// fleet returns n Limiters (replicas) sharing one fresh store, on one clock.
func fleet(t *testing.T, newStore NewStoreFunc, n int) (*Clock, *counting, []*limiter.Limiter) {
	t.Helper()
	clock := NewClock(start)
	s := &counting{Store: newStore(t, clock.Now)}
	as[limiter.Leaser](t, s.Store)
	reps := make([]*limiter.Limiter, n)
	for i := range reps {
		reps[i] = limiter.New(s, limiter.WithClock(clock.Now))
	}
	return clock, s, reps
}

func acquire(t *testing.T, l *limiter.Limiter, req limiter.Request) limiter.Result {
	t.Helper()
	res, err := l.Acquire(context.Background(), req)
	if err != nil {
		t.Fatalf("Acquire(%+v): %v", req, err)
	}
	if res.Degraded {
		t.Fatalf("Acquire(%+v) = %+v: degraded with a working store", req, res)
	}
	return res
}

// testFleetLocalDecisions checks that decisions from a lease cost no round
// trip: the lease grows to MaxTokens (doubling from what a call needs) and
// then one round trip serves MaxTokens calls.
func testFleetLocalDecisions(t *testing.T, newStore NewStoreFunc) {
	_, s, reps := fleet(t, newStore, 1)
	req := limiter.Request{Key: "hot", Limit: limiter.Limit{MaxCalls: 1000, Window: time.Second}, Cost: 1,
		Lease: limiter.LeasePolicy{MaxTokens: 64, TTL: 100 * ms}}
	for i := range 640 {
		if res := acquire(t, reps[0], req); !res.Allowed {
			t.Fatalf("call %d: denied %+v, want allowed (640 of a burst of 1000, less a reserve of 100)", i, res)
		}
	}
	// Leases of 1, 2, 4, 8, 16, 32 (63 tokens), then 64 each: 6 + 9 + 1.
	if got, want := s.leases.Load(), int64(16); got != want {
		t.Errorf("640 calls made %d lease round trips, want %d", got, want)
	}
	if got := s.takes.Load(); got != 0 {
		t.Errorf("640 calls made %d Take round trips, want 0", got)
	}
}

// testFleetGiveBackOnExpiry checks that a replica's unused tokens go back
// with its next lease when nothing was taken after them, and are left to
// refill when another replica took tokens since.
func testFleetGiveBackOnExpiry(t *testing.T, newStore NewStoreFunc) {
	clock, s, reps := fleet(t, newStore, 2)
	pol := limiter.LeasePolicy{MaxTokens: 8, TTL: leaseTTL}
	req := limiter.Request{Key: "k", Limit: tenPerSec, Cost: 1, Lease: pol}
	// Replica 0 grows its lease to 4 tokens (1, 2, then 4: 7 taken, 4 used).
	for range 4 {
		acquire(t, reps[0], req)
	}
	peek := func(cost int64) bool {
		t.Helper()
		res, err := s.Peek(context.Background(), "k", tenPerSec, cost)
		if err != nil {
			t.Fatal(err)
		}
		return res.Allowed
	}
	if peek(4) {
		t.Fatalf("after leases of 1, 2 and 4, the bucket lends 4: want 3 (7 of 10 leased)")
	}
	// Its last lease (3 unused) expires; its next call gives them back.
	clock.Advance(leaseTTL)
	acquire(t, reps[0], req)
	// 7 leased, 2 refilled over 200ms, 3 given back, and the next lease
	// took 2 (twice the 1 used of the last one): 10 - 7 + 2 + 3 - 2 = 6.
	if !peek(6) || peek(7) {
		t.Errorf("after the give-back, Peek(6) = %v, Peek(7) = %v: want 6 tokens in the bucket", peek(6), peek(7))
	}
	// Replica 1 leases after replica 0's lease: replica 0's unused token
	// cannot go back when it expires.
	acquire(t, reps[1], req)
	clock.Advance(leaseTTL)
	before := s.leases.Load()
	acquire(t, reps[0], req)
	if got := s.leases.Load() - before; got != 1 {
		t.Errorf("a call after the lease expired made %d round trips, want 1", got)
	}
	// 6 - 1 (replica 1) + 2 refilled - 2 (replica 0's next lease) = 5;
	// 6 would mean replica 0's unused token went back.
	if !peek(5) || peek(6) {
		t.Errorf("after a lease that could not be given back, Peek(5) = %v, Peek(6) = %v: want 5 tokens in the bucket", peek(5), peek(6))
	}
}

// testFleetSustainedBound runs two replicas whose callers always want more
// than the limit, from a full bucket, and checks both bounds: the fleet
// admits at most burst + rate*t over any interval, and at least burst +
// rate*t - reserve - replicas*MaxTokens over [0, t].
func testFleetSustainedBound(t *testing.T, newStore NewStoreFunc) {
	clock, _, reps := fleet(t, newStore, 2)
	lim := limiter.Limit{MaxCalls: 1000, Window: time.Second, Burst: 100} // 1 per ms
	pol := limiter.LeasePolicy{MaxTokens: 20, TTL: 10 * ms}               // reserve 10
	p := lim.Params()
	const steps = 2000 // 100µs each: 200ms
	var hist []admission
	var total int64
	for step := range steps + 1 {
		if step > 0 {
			clock.Advance(100 * us)
		}
		nowUS := int64(step) * 100
		for _, r := range reps {
			for range 200 { // until denied; bounded
				res := acquire(t, r, limiter.Request{Key: "k", Limit: lim, Cost: 1, Lease: pol})
				if !res.Allowed {
					break
				}
				hist = append(hist, admission{te: nowUS, cost: 1})
				total++
			}
		}
	}
	checkBound(t, p, hist)
	const exact = 100 + 200 // burst + rate*200ms
	if lower := int64(exact - 10 - 2*20); total < lower || total > exact {
		t.Errorf("two replicas admitted %d in 200ms from a full bucket, want between %d (burst + rate*t - reserve - 2 x max_tokens) and %d (burst + rate*t)", total, lower, exact)
	}
}

// testFleetModel drives 2 or 3 replicas with random limits, lease policies,
// clock steps, costs and waits, and checks every answer against a model of
// lease mode (fleetModel, written from the package documentation) and the
// bounds it promises:
//   - over every interval [a, b] the fleet admits at most burst + rate*(b-a)
//     (admissions counted when the callers proceed: now + Wait);
//   - the unused tokens of live leases are at most replicas x MaxTokens;
//   - a lease ends unused only by expiring, at most once per TTL per
//     replica, leaving at most MaxTokens;
//   - a call refused by the store is refused because the bucket could not
//     lend what the replica's lease lacked while keeping rate x TTL in reserve.
func testFleetModel(t *testing.T, newStore NewStoreFunc) {
	eachSeed(t, 10, 17, func(t *testing.T, seed uint64, rng *rand.Rand) {
		lim := randomLimit(rng)
		if seed%2 == 1 { // a hot key: more tokens than calls
			lim.MaxCalls = 20 + rng.Int64N(500)
		}
		lim.Burst = max(2, 1+rng.Int64N(3*lim.MaxCalls+10))
		p := lim.Params()
		maxTTL := (p.B*p.W - p.W) / p.M // µs: leaves one token lendable
		ttl := 1 + rng.Int64N(maxTTL)
		if rng.IntN(2) == 0 { // most often a small reserve
			ttl = 1 + rng.Int64N(max(maxTTL/4, 1))
		}
		pol := limiter.LeasePolicy{TTL: time.Duration(ttl) * us}
		pol.MaxTokens = 1 + rng.Int64N(pol.LeaseCapacity(lim))
		if rng.IntN(2) == 0 {
			pol.MaxTokens = pol.LeaseCapacity(lim)
		}
		checkFleet(t, newStore, rng, lim, pol, 2+rng.IntN(2), 400)
	})
}

func checkFleet(t *testing.T, newStore NewStoreFunc, rng *rand.Rand, lim limiter.Limit, pol limiter.LeasePolicy, n, calls int) {
	t.Helper()
	clock, s, reps := fleet(t, newStore, n)
	p := lim.Params()
	m := newFleetModel(p, pol, n)
	capacity := pol.LeaseCapacity(lim)
	tokenUS := max(p.W/p.M, 1)
	ttlUS := int64(pol.TTL / us)
	var hist []admission
	var nowUS int64
	hows := map[string]int{}
	defer func() { t.Logf("%v, %d replicas: %v", pol, n, hows) }()
	for i := range calls {
		switch r := rng.IntN(10); {
		case r < 4:
		case r < 7:
			nowUS += rng.Int64N(tokenUS/2 + 2)
		case r < 9:
			nowUS += rng.Int64N(ttlUS + 2)
		default:
			nowUS += rng.Int64N(3*p.B*tokenUS + 2)
		}
		clock.Advance(time.Duration(nowUS)*us - clock.Now().Sub(start))
		rep := rng.IntN(n)
		cost := 1 + rng.Int64N(min(capacity, 3))
		var maxWait time.Duration
		if rng.IntN(5) == 0 {
			maxWait = time.Duration(rng.Int64N(3*tokenUS*cost+2)) * us
		}
		req := limiter.Request{Key: "k", Limit: lim, Cost: cost, MaxWait: maxWait, Lease: pol}
		what := fmt.Sprintf("call %d at +%dµs on replica %d (limit %+v, %v, cost %d, maxWait %v)", i, nowUS, rep, lim, pol, cost, maxWait)
		res, err := reps[rep].Acquire(context.Background(), req)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		want := m.acquire(rep, nowUS, cost, int64(maxWait/us))
		if res.Allowed != want.allowed || int64(res.Wait/us) != want.wait || int64(res.RetryAfter/us) != want.retry || res.Degraded {
			t.Fatalf("%s:\n got %+v\nwant allowed %v, wait %dµs, retry after %dµs (%s)", what, res, want.allowed, want.wait, want.retry, want.how)
		}
		hows[strings.Join(strings.Fields(want.how)[:2], " ")]++
		if strings.Contains(want.how, "gave") {
			hows["gave back"]++
		}
		if err := m.check(nowUS); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if want.how == "refused by the store" && ttlUS*p.M%p.W == 0 {
			// The bucket cannot lend need with the reserve kept.
			reserve := ttlUS * p.M / p.W
			if c := want.need + reserve; c <= p.B {
				peek, err := s.Peek(context.Background(), "k", lim, c)
				if err != nil {
					t.Fatal(err)
				}
				if peek.Allowed {
					t.Fatalf("%s: refused, but the bucket has %d tokens (need %d + reserve %d)", what, c, want.need, reserve)
				}
			}
		}
		if res.Allowed {
			hist = append(hist, admission{te: nowUS + int64(res.Wait/us), cost: cost})
		}
	}
	checkBound(t, p, hist)
}

// fleetModel is the specification of lease mode for one key, written from
// the package documentation in absolute units (1/M µs since start) rather
// than the stores' relative debts.
type fleetModel struct {
	p             limiter.Params
	ttl, maxToken int64
	tat           int64 // the shared bucket: full again at tat/M µs
	reps          []modelReplica
	// expiries counts each replica's leases that ended with tokens unused.
	expiries []int64
}

type modelReplica struct {
	tokens, granted int64
	expires         int64 // µs
	tat             int64 // the state its lease left
	denied          bool  // a remembered refusal: need tokens not lendable before until
	deniedNeed      int64
	deniedUntil     int64
}

type modelAnswer struct {
	allowed           bool
	wait, retry, need int64
	how               string
}

func newFleetModel(p limiter.Params, pol limiter.LeasePolicy, n int) *fleetModel {
	return &fleetModel{p: p, ttl: int64(pol.TTL / us), maxToken: pol.MaxTokens, tat: -1 << 40,
		reps: make([]modelReplica, n), expiries: make([]int64, n)}
}

func (f *fleetModel) acquire(i int, nowUS, cost, maxWaitUS int64) modelAnswer {
	p, r := f.p, &f.reps[i]
	if nowUS < r.expires && r.tokens >= cost {
		r.tokens -= cost
		return modelAnswer{allowed: true, how: "from the lease"}
	}
	live := int64(0)
	if nowUS < r.expires {
		live = r.tokens
	}
	need := cost - live
	if r.denied && nowUS >= r.deniedUntil {
		r.denied = false
	}
	if r.denied && need >= r.deniedNeed && r.deniedUntil-nowUS > maxWaitUS {
		return modelAnswer{retry: r.deniedUntil - nowUS, need: need, how: "remembered refusal"}
	}
	// A round trip: the lease that is ending, then the store's decision.
	used := r.granted
	var giveTAT, give int64
	switch {
	case nowUS < r.expires:
	case nowUS >= r.expires+f.ttl:
		if r.tokens > 0 {
			f.expiries[i]++
		}
		used, r.tokens = 0, 0
	case r.tokens > 0:
		f.expiries[i]++
		giveTAT, give = r.tat, r.tokens
		used -= r.tokens
		r.tokens = 0
	}
	r.granted = used
	want := max(min(max(2*used, need), f.maxToken, f.capacity()), need)
	now := nowUS * p.M
	how := ""
	if give > 0 && f.tat == giveTAT && f.tat > now {
		f.tat = max(f.tat-give*p.W, now)
		how = fmt.Sprintf(" (gave %d back)", give)
	}
	debt := max(f.tat-now, 0)
	lendable := p.B*p.W - f.ttl*p.M
	if debt <= lendable && (lendable-debt)/p.W >= need {
		k := min(want, (lendable-debt)/p.W)
		f.tat = now + debt + k*p.W
		r.tokens, r.expires, r.granted, r.tat = k-need, nowUS+f.ttl, k+live, f.tat
		return modelAnswer{allowed: true, how: fmt.Sprintf("a lease of %d%s", k, how)}
	}
	if t := ceil(debt+cost*p.W-lendable, p.M); maxWaitUS > 0 && t <= maxWaitUS {
		f.tat = now + max(debt, t*p.M) + cost*p.W
		return modelAnswer{allowed: true, wait: t, how: "a reservation"}
	}
	retry := ceil(debt+need*p.W-lendable, p.M)
	r.denied, r.deniedNeed, r.deniedUntil = true, need, nowUS+retry
	return modelAnswer{retry: retry, need: need, how: "refused by the store"}
}

func (f *fleetModel) capacity() int64 { return (f.p.B*f.p.W - f.ttl*f.p.M) / f.p.W }

// check checks the model's own bounds at nowUS.
func (f *fleetModel) check(nowUS int64) error {
	var live int64
	for i, r := range f.reps {
		if r.tokens > f.maxToken {
			return fmt.Errorf("replica %d holds %d unused tokens, more than max_tokens %d", i, r.tokens, f.maxToken)
		}
		if nowUS < r.expires {
			live += r.tokens
		}
		if lim := 1 + nowUS/f.ttl; f.expiries[i] > lim {
			return fmt.Errorf("replica %d had %d leases end unused in %dµs, more than 1 + t/ttl = %d", i, f.expiries[i], nowUS, lim)
		}
	}
	if lim := int64(len(f.reps)) * f.maxToken; live > lim {
		return fmt.Errorf("live leases hold %d unused tokens, more than replicas x max_tokens = %d", live, lim)
	}
	return nil
}
