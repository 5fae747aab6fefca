// Package storetest is the conformance suite for limiter.Store
// implementations: every store must give the answers it checks, which are the
// exact GCRA answers of package limiter.
//
// A store's tests call [Run] with a constructor that builds a fresh store
// reading the given clock:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, now func() time.Time) limiter.Store {
//			return limiter.NewMemoryStore(limiter.WithMemoryClock(now))
//		})
//	}
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/topdeck/resilience/internal/clocktest"
	"github.com/topdeck/resilience/internal/testkit"

	"github.com/topdeck/resilience/limiter"
)

// NewStoreFunc builds a fresh, empty store for one test, reading now as its
// only clock.
type NewStoreFunc func(t *testing.T, now func() time.Time) limiter.Store

// Run runs the conformance suite against the stores newStore builds. Each
// subtest builds its own store and clock.
func Run(t *testing.T, newStore NewStoreFunc) {
	t.Helper()
	run(t, suite{
		{"BurstThenDeny", testBurstThenDeny},
		{"Refill", testRefill},
		{"Cost", testCost},
		{"RetryAfterExact", testRetryAfterExact},
		{"FractionalIntervalIsExact", testFractionalIntervalIsExact},
		{"DeniedNotCharged", testDeniedNotCharged},
		{"Reservations", testReservations},
		{"PeekChangesNothing", testPeekChangesNothing},
		{"KeysIndependent", testKeysIndependent},
		{"LimitChange", testLimitChange},
		{"LimitChangeNeverLocksOut", testLimitChangeNeverLocksOut},
		{"LimitChangeAtMostDrained", testLimitChangeAtMostDrained},
		{"LimitChangeCarriesTokensUsed", testLimitChangeCarriesTokensUsed},
		{"RandomLimitChanges", testRandomLimitChanges},
		{"Cancel", testCancel},
		{"CancelOnlyLast", testCancelOnlyLast},
		{"InvalidInput", testInvalidInput},
		{"RandomBound", testRandomBound},
		{"ConcurrentKeys", testConcurrentKeys},
	}, newStore)
}

// suite is a list of named tests of stores, each given newStore to build
// its own.
type suite = testkit.Suite[NewStoreFunc]

// run runs each test of s as a subtest against the stores newStore builds.
func run(t *testing.T, s suite, newStore NewStoreFunc) {
	t.Helper()
	s.Run(t, func(*testing.T) NewStoreFunc { return newStore })
}

// atStart builds a store for t on a fresh clock reading start, the suite's
// epoch, and returns both.
func (newStore NewStoreFunc) atStart(t *testing.T) (*Clock, limiter.Store) {
	clock := NewClock(start)
	return clock, newStore(t, clock.Now)
}

// Clock is a manual clock, safe for concurrent use: time moves only on
// Advance. The zero value is not usable; use NewClock.
type Clock = clocktest.Clock

// NewClock returns a clock reading start.
func NewClock(start time.Time) *Clock { return clocktest.New(start) }

// start is the suite's epoch: a whole second, like most real clocks are not.
var start = time.Unix(1_700_000_000, 0).Add(123456 * time.Microsecond)

const us = time.Microsecond
const ms = time.Millisecond

// Limits used by the step tests.
var (
	tenPerSecBurst5 = limiter.Limit{MaxCalls: 10, Window: time.Second, Burst: 5} // one token per 100ms
	threePerSec     = limiter.Limit{MaxCalls: 3, Window: time.Second}            // one token per 333333.3µs
	tenPerSecBurst1 = limiter.Limit{MaxCalls: 10, Window: time.Second, Burst: 1}
)

// step is one call in a step test: advance the clock, then Take (or Peek,
// or Cancel) and compare the whole Result. A Result's Reservation is checked
// to be set exactly when Wait > 0 and then left out of the comparison.
type step struct {
	advance time.Duration
	peek    bool
	// cancel, when >= 1, cancels the reservation made at step cancel-1
	// (with this step's key and lim) and wants canceled.
	cancel   int
	canceled bool
	key      string // default "k"
	lim      limiter.Limit
	cost     int64 // default 1
	maxWait  time.Duration
	want     limiter.Result
}

func allowed(remaining int64, reset time.Duration) limiter.Result {
	return limiter.Result{Allowed: true, Remaining: remaining, ResetAfter: reset}
}

func reserved(wait, reset time.Duration) limiter.Result {
	return limiter.Result{Allowed: true, Wait: wait, ResetAfter: reset}
}

func denied(remaining int64, retry, reset time.Duration) limiter.Result {
	return limiter.Result{Remaining: remaining, RetryAfter: retry, ResetAfter: reset}
}

func runSteps(t *testing.T, newStore NewStoreFunc, steps []step) {
	t.Helper()
	clock, s := newStore.atStart(t)
	results := make([]limiter.Result, len(steps))
	for i, st := range steps {
		clock.Advance(st.advance)
		key := st.key
		if key == "" {
			key = "k"
		}
		cost := st.cost
		if cost == 0 {
			cost = 1
		}
		if st.cancel > 0 {
			r := results[st.cancel-1].Reservation
			got, err := as[limiter.Canceler](t, s).Cancel(context.Background(), key, st.lim, r)
			if err != nil {
				t.Fatalf("step %d: Cancel(%q, %+v, reservation of step %d) at +%v: %v", i, key, st.lim, st.cancel-1, clock.Now().Sub(start), err)
			}
			if got != st.canceled {
				t.Errorf("step %d: Cancel(%q, %+v, reservation of step %d) at +%v = %v, want %v", i, key, st.lim, st.cancel-1, clock.Now().Sub(start), got, st.canceled)
			}
			continue
		}
		op := "Take"
		var got limiter.Result
		var err error
		if st.peek {
			op = "Peek"
			got, err = s.Peek(context.Background(), key, st.lim, cost)
		} else {
			got, err = s.Take(context.Background(), key, st.lim, cost, st.maxWait)
		}
		if err != nil {
			t.Fatalf("step %d: %s(%q, %+v, cost %d, maxWait %v) at +%v: %v", i, op, key, st.lim, cost, st.maxWait, clock.Now().Sub(start), err)
		}
		results[i] = got
		if got.Reservation.IsZero() == (got.Wait > 0) {
			t.Errorf("step %d: %s(%q, %+v, cost %d, maxWait %v) at +%v = %+v: want a Reservation exactly when Wait > 0", i, op, key, st.lim, cost, st.maxWait, clock.Now().Sub(start), got)
		}
		got.Reservation = limiter.Reservation{}
		if got != st.want {
			t.Errorf("step %d: %s(%q, %+v, cost %d, maxWait %v) at +%v:\n got %+v\nwant %+v", i, op, key, st.lim, cost, st.maxWait, clock.Now().Sub(start), got, st.want)
		}
	}
}

func testBurstThenDeny(t *testing.T, newStore NewStoreFunc) {
	l := tenPerSecBurst5
	runSteps(t, newStore, []step{
		{lim: l, want: allowed(4, 100*ms)},
		{lim: l, want: allowed(3, 200*ms)},
		{lim: l, want: allowed(2, 300*ms)},
		{lim: l, want: allowed(1, 400*ms)},
		{lim: l, want: allowed(0, 500*ms)},
		{lim: l, want: denied(0, 100*ms, 500*ms)},
		{lim: l, want: denied(0, 100*ms, 500*ms)},
	})
}

func testRefill(t *testing.T, newStore NewStoreFunc) {
	l := tenPerSecBurst5
	runSteps(t, newStore, []step{
		{lim: l, cost: 5, want: allowed(0, 500*ms)},
		{lim: l, want: denied(0, 100*ms, 500*ms)},
		{advance: 40 * ms, lim: l, want: denied(0, 60*ms, 460*ms)},
		{advance: 60 * ms, lim: l, want: allowed(0, 500*ms)},
		{lim: l, want: denied(0, 100*ms, 500*ms)},
		{advance: 250 * ms, lim: l, want: allowed(1, 350*ms)},
		// Long idle: the bucket holds burst tokens, not more.
		{advance: 10 * time.Second, lim: l, want: allowed(4, 100*ms)},
		{lim: l, cost: 4, want: allowed(0, 500*ms)},
		{lim: l, want: denied(0, 100*ms, 500*ms)},
	})
}

func testCost(t *testing.T, newStore NewStoreFunc) {
	l := tenPerSecBurst5
	runSteps(t, newStore, []step{
		{lim: l, cost: 3, want: allowed(2, 300*ms)},
		{lim: l, cost: 3, want: denied(2, 100*ms, 300*ms)},
		{lim: l, cost: 2, want: allowed(0, 500*ms)},
		{advance: 250 * ms, lim: l, cost: 3, want: denied(2, 50*ms, 250*ms)},
		{lim: l, cost: 2, want: allowed(0, 450*ms)},
		{advance: 450 * ms, lim: l, cost: 5, want: allowed(0, 500*ms)},
	})
}

// drainThreePerSec are the three calls that drain a full threePerSec
// bucket: each interval is 1/3 s rounded up, and the last call leaves it full
// again exactly one second later.
var drainThreePerSec = []step{
	{lim: threePerSec, want: allowed(2, 333334*us)},
	{lim: threePerSec, want: allowed(1, 666667*us)},
	{lim: threePerSec, want: allowed(0, time.Second)},
}

func testRetryAfterExact(t *testing.T, newStore NewStoreFunc) {
	l := threePerSec
	runSteps(t, newStore, slices.Concat(drainThreePerSec, []step{
		{lim: l, want: denied(0, 333334*us, time.Second)},
		// One microsecond early: still denied, one microsecond to go.
		{advance: 333333 * us, lim: l, want: denied(0, 1*us, 666667*us)},
		{advance: 1 * us, lim: l, want: allowed(0, time.Second)},
		// Cost 2 after a drain: exactly 2/3 s.
		{lim: l, cost: 2, want: denied(0, 666666*us, time.Second)},
		{advance: 666665 * us, lim: l, cost: 2, want: denied(1, 1*us, 333335*us)},
		{advance: 1 * us, lim: l, cost: 2, want: allowed(0, time.Second)},
	}))
}

// testFractionalIntervalIsExact checks that emission intervals that are not
// whole microseconds do not accumulate rounding: three single calls at 3/s
// leave the bucket full exactly one second later.
func testFractionalIntervalIsExact(t *testing.T, newStore NewStoreFunc) {
	l := threePerSec
	runSteps(t, newStore, slices.Concat(drainThreePerSec, []step{
		{advance: time.Second - us, lim: l, cost: 3, want: denied(2, 1*us, 1*us)},
		{advance: us, lim: l, cost: 3, want: allowed(0, time.Second)},
	}))
}

func ceil(a, b int64) int64 { return (a + b - 1) / b }

func testDeniedNotCharged(t *testing.T, newStore NewStoreFunc) {
	l := tenPerSecBurst1
	steps := []step{{lim: l, want: allowed(0, 100*ms)}}
	for range 20 {
		steps = append(steps, step{lim: l, want: denied(0, 100*ms, 100*ms)})
	}
	for range 10 {
		steps = append(steps, step{advance: 5 * ms, lim: l, want: denied(0, 0, 0)}) // filled in below
	}
	for i := 21; i < len(steps); i++ {
		left := 100*ms - time.Duration(i-20)*5*ms
		steps[i].want = denied(0, left, left)
	}
	steps = append(steps, step{advance: 50 * ms, lim: l, want: allowed(0, 100*ms)})
	runSteps(t, newStore, steps)
}

func testReservations(t *testing.T, newStore NewStoreFunc) {
	l := tenPerSecBurst1
	runSteps(t, newStore, []step{
		{lim: l, maxWait: time.Second, want: allowed(0, 100*ms)},
		// Each reserver queues behind the previous one.
		{lim: l, maxWait: time.Second, want: reserved(100*ms, 200*ms)},
		{lim: l, maxWait: time.Second, want: reserved(200*ms, 300*ms)},
		// A caller that will not wait cannot overtake them...
		{lim: l, want: denied(0, 300*ms, 300*ms)},
		// ...and one that would wait, but not long enough, takes nothing.
		{lim: l, maxWait: 300*ms - us, want: denied(0, 300*ms, 300*ms)},
		{lim: l, maxWait: 300 * ms, want: reserved(300*ms, 400*ms)},
		{advance: 150 * ms, lim: l, want: denied(0, 250*ms, 250*ms)},
		{peek: true, lim: l, want: denied(0, 250*ms, 250*ms)},
		{lim: l, maxWait: time.Second, want: reserved(250*ms, 350*ms)},
		// Once every reservation is due, the bucket refills as usual.
		{advance: 350 * ms, lim: l, want: allowed(0, 100*ms)},
	})
	// Reservations with cost: three tokens at 10/s, burst 5.
	l = tenPerSecBurst5
	t.Run("cost", func(t *testing.T) {
		runSteps(t, newStore, []step{
			{lim: l, cost: 4, want: allowed(1, 400*ms)},
			{lim: l, cost: 3, maxWait: time.Second, want: reserved(200*ms, 700*ms)},
			{lim: l, cost: 1, maxWait: time.Second, want: reserved(300*ms, 800*ms)},
			{lim: l, cost: 5, want: denied(0, 800*ms, 800*ms)},
		})
	})
}

func testPeekChangesNothing(t *testing.T, newStore NewStoreFunc) {
	l := tenPerSecBurst5
	clock, s := newStore.atStart(t)
	ctx := context.Background()
	plan := []struct {
		advance time.Duration
		cost    int64
	}{{0, 1}, {0, 3}, {0, 1}, {0, 1}, {0, 2}, {30 * ms, 1}, {100 * ms, 2}, {0, 5}, {2 * time.Second, 5}, {0, 1}}
	for i, p := range plan {
		clock.Advance(p.advance)
		p1, err := s.Peek(ctx, "k", l, p.cost)
		if err != nil {
			t.Fatalf("step %d: Peek: %v", i, err)
		}
		p2, err := s.Peek(ctx, "k", l, p.cost)
		if err != nil {
			t.Fatalf("step %d: Peek: %v", i, err)
		}
		got, err := s.Take(ctx, "k", l, p.cost, 0)
		if err != nil {
			t.Fatalf("step %d: Take: %v", i, err)
		}
		if p1 != p2 {
			t.Errorf("step %d: second Peek = %+v, want the first %+v", i, p2, p1)
		}
		if p1 != got {
			t.Errorf("step %d (cost %d): Peek = %+v, want what Take answered: %+v", i, p.cost, p1, got)
		}
	}
	// A bucket only ever peeked stays full.
	for range 10 {
		if _, err := s.Peek(ctx, "fresh", l, 5); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Take(ctx, "fresh", l, 5, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := allowed(0, 500*ms); got != want {
		t.Errorf("Take after peeks = %+v, want %+v", got, want)
	}
}

func testKeysIndependent(t *testing.T, newStore NewStoreFunc) {
	l := tenPerSecBurst5
	runSteps(t, newStore, []step{
		{key: "a", lim: l, cost: 5, want: allowed(0, 500*ms)},
		{key: "a", lim: l, want: denied(0, 100*ms, 500*ms)},
		{key: "b", lim: l, want: allowed(4, 100*ms)},
		{key: "a{b}", lim: l, want: allowed(4, 100*ms)},
		{key: "", lim: l, cost: 2, want: allowed(3, 200*ms)},
		{key: "a", lim: l, want: denied(0, 100*ms, 500*ms)},
	})
}

// testConcurrentKeys takes on many keys from many goroutines at once, so
// that a batching store sends decisions on several keys in one pipeline
// (split per node on Redis Cluster), and checks that each key admitted
// exactly its burst: the clock does not move, so nothing refills.
func testConcurrentKeys(t *testing.T, newStore NewStoreFunc) {
	const (
		keys    = 16 // enough to land on every master of a 3-master Cluster
		workers = 4  // per key
		calls   = 5  // per worker: 20 per key, twice the burst
		burst   = 10
	)
	_, s := newStore.atStart(t)
	lim := limiter.Limit{MaxCalls: 1, Window: time.Hour, Burst: burst}
	var admitted [keys]atomic.Int64
	for _, err := range testkit.Parallel(keys*workers, func(i int) error {
		k := i / workers
		for range calls {
			res, err := s.Take(context.Background(), fmt.Sprintf("ck%d", k), lim, 1, 0)
			if err != nil {
				return err
			}
			if res.Allowed {
				admitted[k].Add(1)
			}
		}
		return nil
	}) {
		t.Fatalf("Take: %v", err)
	}
	for k := range keys {
		if got := admitted[k].Load(); got != burst {
			t.Errorf("key ck%d: admitted %d of %d calls, want the burst, %d", k, got, workers*calls, burst)
		}
	}
}

// as returns s as an I, the interface of a store's optional feature, and
// fails t if s does not implement I.
func as[I any](t *testing.T, s limiter.Store) I {
	t.Helper()
	i, ok := s.(I)
	if !ok {
		t.Fatalf("store %T does not implement %v", s, reflect.TypeFor[I]())
	}
	return i
}

// testLimitChange checks that a bucket used under another limit carries its
// state over as tokens used (rounded up), at most the new burst.
func testLimitChange(t *testing.T, newStore NewStoreFunc) {
	runSteps(t, newStore, []step{
		{lim: tenPerSecBurst5, cost: 5, want: allowed(0, 500*ms)},
		// 1/s, burst 1: 5 tokens used, at most 1: drained, as a fresh
		// 1/s bucket after one call.
		{lim: limiter.Limit{MaxCalls: 1, Window: time.Second}, want: denied(0, time.Second, time.Second)},
		// 100/s, burst 100: the denial wrote nothing, so 5 used (50ms),
		// and this call: 94 left.
		{lim: limiter.Limit{MaxCalls: 100, Window: time.Second}, want: allowed(94, 60*ms)},
		// Back to 10/s burst 5: 6 used, at most 5.
		{lim: tenPerSecBurst5, want: denied(0, 100*ms, 500*ms)},
	})
	// From a fractional TAT (3/s): one token used is one token used.
	t.Run("fractional", func(t *testing.T) {
		runSteps(t, newStore, []step{
			{lim: threePerSec, want: allowed(2, 333334*us)},
			{lim: tenPerSecBurst5, want: allowed(3, 200*ms)},
			{lim: tenPerSecBurst5, want: allowed(2, 300*ms)},
		})
	})
	// Part of a token refilled still counts as a token used.
	t.Run("rounded up", func(t *testing.T) {
		runSteps(t, newStore, []step{
			{lim: tenPerSecBurst5, cost: 3, want: allowed(2, 300*ms)},
			{advance: 150 * ms, lim: limiter.Limit{MaxCalls: 100, Window: time.Second}, peek: true, want: allowed(97, 30*ms)},
		})
	})
	// The same limit spelled two ways (Burst 0 and Burst MaxCalls) is the
	// same limit: nothing is converted.
	t.Run("same limit", func(t *testing.T) {
		runSteps(t, newStore, []step{
			{lim: threePerSec, want: allowed(2, 333334*us)},
			// Converted, the fraction of a token refilled in 1µs
			// would be lost: ResetAfter would be 666667µs.
			{advance: us, lim: limiter.Limit{MaxCalls: 3, Window: time.Second, Burst: 3}, want: allowed(1, 666666*us)},
			{lim: limiter.Limit{MaxCalls: 6, Window: 2 * time.Second, Burst: 3}, cost: 2, want: denied(1, 333333*us, 666666*us)},
		})
	})
}

// testLimitChangeNeverLocksOut is issue 13's case: a call under 1 per year on
// a key must not lock out the key's own limit of 10 per minute.
func testLimitChangeNeverLocksOut(t *testing.T, newStore NewStoreFunc) {
	year := limiter.Limit{MaxCalls: 1, Window: 31536000 * time.Second}
	owner := limiter.Limit{MaxCalls: 10, Window: time.Minute}
	steps := []step{
		{lim: year, want: allowed(0, 31536000*time.Second)},
		// One token used: 9 left under the owner's limit.
		{lim: owner, want: allowed(8, 12*time.Second)},
		// The year-long limit is drained for its own caller, and says so...
		{lim: year, want: denied(0, 31536000*time.Second, 31536000*time.Second)},
	}
	// ...but the owner still has its 8 tokens, then waits 6s per token.
	for i := int64(7); i >= 0; i-- {
		steps = append(steps, step{lim: owner, want: allowed(i, time.Duration(60-6*i)*time.Second)})
	}
	steps = append(steps, step{lim: owner, want: denied(0, 6*time.Second, time.Minute)})
	runSteps(t, newStore, steps)

	// An Envoy override of 1/year on a configured 10/s descriptor.
	t.Run("override", func(t *testing.T) {
		tenPerSec := limiter.Limit{MaxCalls: 10, Window: time.Second}
		runSteps(t, newStore, []step{
			{lim: year, want: allowed(0, 31536000*time.Second)},
			{lim: tenPerSec, want: allowed(8, 200*ms)},
		})
	})
}

// testLimitChangeAtMostDrained checks that a bucket moved to a smaller limit
// is at most drained: it answers as a fresh bucket of that limit that was
// just drained, even when the old limit held reservations beyond its burst.
func testLimitChangeAtMostDrained(t *testing.T, newStore NewStoreFunc) {
	tenPerMin := limiter.Limit{MaxCalls: 10, Window: time.Minute}
	fivePerMin := limiter.Limit{MaxCalls: 5, Window: time.Minute}
	runSteps(t, newStore, []step{
		{lim: tenPerMin, cost: 10, want: allowed(0, time.Minute)},
		// Ten more reserved: 20 tokens of debt under the old limit.
		{lim: tenPerMin, cost: 10, maxWait: time.Hour, want: reserved(time.Minute, 2*time.Minute)},
		{lim: fivePerMin, want: denied(0, 12*time.Second, time.Minute)},
		{lim: fivePerMin, cost: 5, want: denied(0, time.Minute, time.Minute)},
		// A fresh 5/min bucket, drained, says the same.
		{key: "fresh", lim: fivePerMin, cost: 5, want: allowed(0, time.Minute)},
		{key: "fresh", lim: fivePerMin, want: denied(0, 12*time.Second, time.Minute)},
		{key: "fresh", lim: fivePerMin, cost: 5, want: denied(0, time.Minute, time.Minute)},
	})
}

// testLimitChangeCarriesTokensUsed checks that 3 tokens used under one limit
// are 3 tokens used under the next: exactly burst-3 are left.
func testLimitChangeCarriesTokensUsed(t *testing.T, newStore NewStoreFunc) {
	hundred := limiter.Limit{MaxCalls: 100, Window: time.Second}
	runSteps(t, newStore, []step{
		{lim: tenPerSecBurst5, cost: 3, want: allowed(2, 300*ms)},
		{lim: hundred, cost: 98, peek: true, want: denied(97, 10*ms, 30*ms)},
		{lim: hundred, cost: 98, want: denied(97, 10*ms, 30*ms)},
		{lim: hundred, cost: 97, want: allowed(0, time.Second)},
	})
	// And the other way: 3 used under 100/s are 3 used under 10/s burst 5.
	t.Run("to a smaller limit", func(t *testing.T) {
		runSteps(t, newStore, []step{
			{lim: hundred, cost: 3, want: allowed(97, 30*ms)},
			{lim: tenPerSecBurst5, cost: 3, want: denied(2, 100*ms, 300*ms)},
			{lim: tenPerSecBurst5, cost: 2, want: allowed(0, 500*ms)},
		})
	})
}

// testRandomLimitChanges drives one key with calls under three limits in
// random order and checks the promise of a limit change: the first call under
// a limit other than the last one charged never waits or is refused longer
// than it would be by a fresh, drained bucket of its own limit, and it sees
// at most burst tokens.
func testRandomLimitChanges(t *testing.T, newStore NewStoreFunc) {
	eachSeed(t, 4, 7, func(t *testing.T, _ uint64, rng *rand.Rand) {
		var lims []limiter.Limit
		for range 3 {
			l := limiter.Limit{MaxCalls: 1 + rng.Int64N(10), Window: time.Duration(1000+rng.Int64N(3_000_000)) * us}
			if rng.IntN(2) == 0 {
				l.Burst = 1 + rng.Int64N(12)
			}
			lims = append(lims, l)
		}
		clock, s := newStore.atStart(t)
		ctx := context.Background()
		last := -1 // the limit last charged
		for i := range 200 {
			clock.Advance(time.Duration(rng.Int64N(300_000)) * us)
			j := rng.IntN(len(lims))
			lim := lims[j]
			p := lim.Params()
			cost := 1 + rng.Int64N(p.B)
			var maxWait time.Duration
			if rng.IntN(3) == 0 {
				maxWait = time.Duration(rng.Int64N(3_000_000)) * us
			}
			res, err := s.Take(ctx, "k", lim, cost, maxWait)
			if err != nil {
				t.Fatalf("call %d: Take: %v", i, err)
			}
			what := fmt.Sprintf("call %d (limit %+v, cost %d, maxWait %v) = %+v", i, lim, cost, maxWait, res)
			if res.Remaining > p.B-cost && res.Allowed || res.Remaining > p.B {
				t.Fatalf("%s: more than burst tokens", what)
			}
			if last >= 0 && last != j {
				// A drained bucket has cost tokens after cost*W/M µs.
				drained := time.Duration(ceil(cost*p.W, p.M)) * us
				if res.RetryAfter > drained || res.Wait > drained {
					t.Fatalf("%s: after a limit change, waits longer than a drained bucket (%v)", what, drained)
				}
				if res.ResetAfter > time.Duration(ceil((p.B+cost)*p.W, p.M)+1)*us {
					t.Fatalf("%s: after a limit change, ResetAfter beyond a drained bucket plus this call", what)
				}
			}
			if res.Allowed {
				last = j
			}
		}
	})
}

// testCancel checks that a canceled reservation is given back: the bucket
// answers as if it had never been made.
func testCancel(t *testing.T, newStore NewStoreFunc) {
	l := tenPerSecBurst1
	runSteps(t, newStore, []step{
		{lim: l, want: allowed(0, 100*ms)},
		{lim: l, maxWait: time.Second, want: reserved(100*ms, 200*ms)},
		{advance: 30 * ms, cancel: 2, lim: l, canceled: true},
		{peek: true, lim: l, want: denied(0, 70*ms, 70*ms)},
		// Given back once only.
		{cancel: 2, lim: l, canceled: false},
		{lim: l, maxWait: time.Second, want: reserved(70*ms, 170*ms)},
		// Under another limit, or with no reservation, nothing happens.
		{cancel: 6, lim: tenPerSecBurst5, canceled: false},
		{cancel: 1, lim: l, canceled: false},
		{peek: true, lim: l, cost: 1, want: denied(0, 170*ms, 170*ms)},
		{cancel: 6, lim: l, canceled: true},
		{peek: true, lim: l, want: denied(0, 70*ms, 70*ms)},
		// The last of a queue given back, the bucket refills on time.
		{advance: 70 * ms, lim: l, want: allowed(0, 100*ms)},
	})
	// A reservation on a bucket used under another limit gives back the
	// tokens it took, not the conversion.
	t.Run("after limit change", func(t *testing.T) {
		runSteps(t, newStore, []step{
			{lim: tenPerSecBurst5, cost: 5, want: allowed(0, 500*ms)},
			{lim: l, maxWait: time.Second, want: reserved(100*ms, 200*ms)},
			{cancel: 2, lim: l, canceled: true},
			{peek: true, lim: l, want: denied(0, 100*ms, 100*ms)},
		})
	})
}

// testCancelOnlyLast checks that a reservation is given back only when
// nothing was taken after it.
func testCancelOnlyLast(t *testing.T, newStore NewStoreFunc) {
	l := tenPerSecBurst1
	runSteps(t, newStore, []step{
		{lim: l, want: allowed(0, 100*ms)},
		{lim: l, maxWait: time.Second, want: reserved(100*ms, 200*ms)},
		{lim: l, maxWait: time.Second, want: reserved(200*ms, 300*ms)},
		// The first is not the last: it stays.
		{cancel: 2, lim: l, canceled: false},
		{peek: true, lim: l, want: denied(0, 300*ms, 300*ms)},
		// The second is; then the first is the last again.
		{cancel: 3, lim: l, canceled: true},
		{cancel: 2, lim: l, canceled: true},
		{peek: true, lim: l, want: denied(0, 100*ms, 100*ms)},
		// A denial changes nothing, so it does not stop a give-back.
		{lim: l, maxWait: time.Second, want: reserved(100*ms, 200*ms)},
		{lim: l, want: denied(0, 200*ms, 200*ms)},
		{cancel: 9, lim: l, canceled: true},
		// An immediate admission after a reservation does.
		{advance: 100 * ms, lim: l, maxWait: time.Second, want: allowed(0, 100*ms)},
		{lim: l, maxWait: time.Second, want: reserved(100*ms, 200*ms)},
		{advance: 250 * ms, lim: l, want: allowed(0, 100*ms)},
		{cancel: 13, lim: l, canceled: false},
	})
}

func testInvalidInput(t *testing.T, newStore NewStoreFunc) {
	_, s := newStore.atStart(t)
	ctx := context.Background()
	tests := []struct {
		lim     limiter.Limit
		cost    int64
		maxWait time.Duration
		field   string
	}{
		{limiter.Limit{MaxCalls: 0, Window: time.Second}, 1, 0, "max_calls"},
		{limiter.Limit{MaxCalls: 1, Window: 0}, 1, 0, "time_window"},
		{limiter.Limit{MaxCalls: 1, Window: time.Nanosecond}, 1, 0, "time_window"},
		{limiter.Limit{MaxCalls: 1, Window: time.Second, Burst: -1}, 1, 0, "burst"},
		{limiter.Limit{MaxCalls: 1, Window: time.Second}, 0, 0, "cost"},
		{limiter.Limit{MaxCalls: 1, Window: time.Second}, 2, 0, "cost"},
		{limiter.Limit{MaxCalls: 1, Window: time.Second}, 1, -1, "max_wait"},
	}
	for _, tt := range tests {
		_, err := s.Take(ctx, "k", tt.lim, tt.cost, tt.maxWait)
		if !InvalidFor(err, tt.field) {
			t.Errorf("Take(%+v, cost %d, maxWait %v) error = %v, want an InvalidArgumentError for %s", tt.lim, tt.cost, tt.maxWait, err, tt.field)
		}
		_, err = s.Peek(ctx, "k", tt.lim, tt.cost)
		if tt.field != "max_wait" && !InvalidFor(err, tt.field) {
			t.Errorf("Peek(%+v, cost %d) error = %v, want an InvalidArgumentError for %s", tt.lim, tt.cost, err, tt.field)
		}
	}
}

// InvalidFor reports whether err is (or wraps) a *limiter.InvalidArgumentError
// naming field.
func InvalidFor(err error, field string) bool {
	var ia *limiter.InvalidArgumentError
	return errors.As(err, &ia) && ia.Field == field
}

// admission is one admitted call: cost tokens at te (now + wait), in
// microseconds since start.
type admission struct{ te, cost int64 }

// testRandomBound drives a store with random limits, clock steps, costs and
// waits, and checks every answer against the definition of a token bucket
// rather than against GCRA's own arithmetic:
//   - over every interval [a, b] the admitted cost is at most burst + rate*(b-a);
//   - whenever no reservation is pending, a call is denied exactly when
//     admitting it would break that bound, RetryAfter is the first instant at
//     which it would not, and Remaining and ResetAfter match the bucket level.
func testRandomBound(t *testing.T, newStore NewStoreFunc) {
	eachSeed(t, 6, 42, func(t *testing.T, _ uint64, rng *rand.Rand) {
		lim := randomLimit(rng)
		if rng.IntN(2) == 0 {
			lim.Burst = 1 + rng.Int64N(2*lim.MaxCalls)
		}
		checkRandom(t, newStore, rng, lim, 300)
	})
}

// eachSeed runs fn as the subtests seed0 to seed<n-1>, each with a
// generator of its own seeded with the seed and stream.
func eachSeed(t *testing.T, n, stream uint64, fn func(t *testing.T, seed uint64, rng *rand.Rand)) {
	t.Helper()
	for seed := range n {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			fn(t, seed, rand.New(rand.NewPCG(seed, stream)))
		})
	}
}

// randomLimit returns a limit of 1 to 12 calls per 1ms to 2s, its burst
// max_calls.
func randomLimit(rng *rand.Rand) limiter.Limit {
	return limiter.Limit{
		MaxCalls: 1 + rng.Int64N(12),
		Window:   time.Duration(1000+rng.Int64N(2_000_000)) * us,
	}
}

func checkRandom(t *testing.T, newStore NewStoreFunc, rng *rand.Rand, lim limiter.Limit, n int) {
	t.Helper()
	p := lim.Params()
	tokenUS := p.W / p.M // roughly
	clock, s := newStore.atStart(t)
	ctx := context.Background()
	var hist []admission
	var nowUS int64
	for i := range n {
		switch r := rng.IntN(10); {
		case r < 3:
		case r < 9:
			nowUS += rng.Int64N(2*tokenUS + 2)
		default:
			nowUS += rng.Int64N(3*p.B*tokenUS + 2)
		}
		clock.Advance(time.Duration(nowUS)*us - clock.Now().Sub(start))
		cost := 1 + rng.Int64N(p.B)
		if rng.IntN(3) > 0 {
			cost = 1 + rng.Int64N(min(p.B, 2))
		}
		var maxWait time.Duration
		if rng.IntN(4) == 0 {
			maxWait = time.Duration(rng.Int64N(3*tokenUS*cost+2)) * us
		}
		peek, err := s.Peek(ctx, "k", lim, cost)
		if err != nil {
			t.Fatalf("call %d: Peek: %v", i, err)
		}
		res, err := s.Take(ctx, "k", lim, cost, maxWait)
		if err != nil {
			t.Fatalf("call %d: Take: %v", i, err)
		}
		what := fmt.Sprintf("call %d at +%dµs (limit %+v, cost %d, maxWait %v)", i, nowUS, lim, cost, maxWait)
		if peek.Allowed != (res.Allowed && res.Wait == 0) {
			t.Fatalf("%s: Peek = %+v but Take = %+v", what, peek, res)
		}
		pending := len(hist) > 0 && hist[len(hist)-1].te > nowUS
		if !pending {
			checkAnswer(t, what, p, hist, nowUS, cost, maxWait, res)
		}
		if !res.Allowed {
			continue
		}
		if res.Wait > 0 && rng.IntN(4) == 0 {
			// Nothing was taken after it: given back, the bucket is
			// as if it had never been made, which the next
			// answers check against the history without it.
			ok, err := as[limiter.Canceler](t, s).Cancel(ctx, "k", lim, res.Reservation)
			if err != nil || !ok {
				t.Fatalf("%s: Cancel of the reservation just made = (%v, %v), want (true, nil)", what, ok, err)
			}
			continue
		}
		hist = append(hist, admission{te: nowUS + int64(res.Wait/us), cost: cost})
	}
	checkBound(t, p, hist)
}

// level returns the bucket level at nowUS in units of 1/M µs, from the
// history alone: min(B*W, min over admissions i of B*W + M*(now-te_i) - W*A)
// where A is the cost admitted in [te_i, now].
func level(p limiter.Params, hist []admission, nowUS int64) int64 {
	lvl := p.B * p.W
	var a int64
	for i := len(hist) - 1; i >= 0; i-- {
		if hist[i].te > nowUS {
			continue
		}
		a += hist[i].cost
		lvl = min(lvl, p.B*p.W+p.M*(nowUS-hist[i].te)-p.W*a)
	}
	return lvl
}

// firstLevel returns the first instant >= nowUS at which the level is at
// least need, with no admissions after nowUS: the latest of the instants at
// which each term of level reaches need.
func firstLevel(p limiter.Params, hist []admission, nowUS, need int64) int64 {
	at := nowUS
	var a int64
	for i := len(hist) - 1; i >= 0; i-- {
		a += hist[i].cost
		if x := need - p.B*p.W + p.W*a; x > 0 {
			at = max(at, hist[i].te+ceil(x, p.M))
		}
	}
	return at
}

func checkAnswer(t *testing.T, what string, p limiter.Params, hist []admission, nowUS, cost int64, maxWait time.Duration, res limiter.Result) {
	t.Helper()
	lvl := level(p, hist, nowUS)
	need := cost * p.W
	if res.Allowed && res.Wait == 0 {
		if lvl < need {
			t.Fatalf("%s: allowed with %d/%d units in the bucket (%d needed): over-admission", what, lvl, p.W, need)
		}
		lvl -= need
	} else {
		if lvl >= need {
			t.Fatalf("%s: got %+v with %d units in the bucket (%d needed): under-admission", what, res, lvl, need)
		}
		retry := firstLevel(p, hist, nowUS, need) - nowUS
		if res.Allowed {
			if got := int64(res.Wait / us); got != retry {
				t.Fatalf("%s: reserved with Wait %v, want %dµs", what, res.Wait, retry)
			}
			if time.Duration(retry)*us > maxWait {
				t.Fatalf("%s: reserved with Wait %v > maxWait", what, res.Wait)
			}
			return
		}
		if got := int64(res.RetryAfter / us); got != retry {
			t.Fatalf("%s: RetryAfter %v, want %dµs", what, res.RetryAfter, retry)
		}
		if time.Duration(retry)*us <= maxWait {
			t.Fatalf("%s: denied with RetryAfter %v within maxWait", what, res.RetryAfter)
		}
	}
	if want := lvl / p.W; res.Remaining != want {
		t.Fatalf("%s: got %+v, want Remaining %d", what, res, want)
	}
	if want := time.Duration(ceil(p.B*p.W-lvl, p.M)) * us; res.ResetAfter != want {
		t.Fatalf("%s: got %+v, want ResetAfter %v", what, res, want)
	}
}

// checkBound checks that over every interval the admitted cost is at most
// burst + rate * length.
func checkBound(t *testing.T, p limiter.Params, hist []admission) {
	t.Helper()
	sort.SliceStable(hist, func(i, j int) bool { return hist[i].te < hist[j].te })
	// Merge admissions at the same instant.
	var merged []admission
	for _, a := range hist {
		if n := len(merged); n > 0 && merged[n-1].te == a.te {
			merged[n-1].cost += a.cost
			continue
		}
		merged = append(merged, a)
	}
	for i := range merged {
		var sum int64
		for j := i; j < len(merged); j++ {
			sum += merged[j].cost
			if sum*p.W > p.B*p.W+p.M*(merged[j].te-merged[i].te) {
				t.Fatalf("admitted %d tokens in [%dµs, %dµs], more than burst %d + %d/%dµs * %dµs", sum, merged[i].te, merged[j].te, p.B, p.M, p.W, merged[j].te-merged[i].te)
			}
		}
	}
}
