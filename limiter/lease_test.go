package limiter_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/topdeck/resilience/internal/storehealth"
	"github.com/topdeck/resilience/internal/testkit"
	"github.com/topdeck/resilience/limiter"
	"github.com/topdeck/resilience/limiter/storetest"
)

// leaseStore is a MemoryStore whose Lease calls can be made to fail, or to
// run a hook first (to move the clock while a lease is "in flight") or after
// the store decided (as if during the reply's way back), and are counted.
type leaseStore struct {
	*limiter.MemoryStore
	leases atomic.Int64
	fail   atomic.Bool
	hook   func()
	after  func()
}

func (s *leaseStore) Lease(ctx context.Context, key string, lim limiter.Limit, req limiter.LeaseRequest) (limiter.LeaseGrant, error) {
	s.leases.Add(1)
	if s.hook != nil {
		s.hook()
	}
	if s.fail.Load() {
		return limiter.LeaseGrant{}, errTimeout
	}
	g, err := s.MemoryStore.Lease(ctx, key, lim, req)
	if s.after != nil {
		s.after()
	}
	return g, err
}

// TestLeasePausedDuringFetch checks that a pause reported through a replica
// while its lease is on the way back (lent by the store before the pause)
// lets that lease's call go but keeps none of its tokens for the next: the
// next call asks the store and is refused, paused.
func TestLeasePausedDuringFetch(t *testing.T) {
	_, s, l := newLeaseFleet(t)
	ctx := context.Background()
	req := limiter.Request{Key: "k", Limit: hot, Cost: 1, Lease: hotLease}
	for range 3 { // leases of 1 and 2, both used up
		acquire(t, l, req)
	}
	s.after = func() {
		s.after = nil
		if _, err := l.Pause(ctx, "k", limiter.Feedback{RetryAfter: time.Second}, limiter.Deny); err != nil {
			t.Errorf("Pause: %v", err)
		}
	}
	if res := acquire(t, l, req); !res.Allowed {
		t.Fatalf("the call whose lease (of 4) was lent before the pause = %+v, want allowed", res)
	}
	before := s.leases.Load()
	res := acquire(t, l, req)
	if res.Allowed || !res.Paused || res.RetryAfter != time.Second {
		t.Errorf("the next call = %+v, want refused, paused for 1s (not served from the lease's 3 unused tokens)", res)
	}
	if got := s.leases.Load() - before; got != 1 {
		t.Errorf("the next call made %d lease round trips, want 1", got)
	}
}

var hot = limiter.Limit{MaxCalls: 100, Window: time.Second} // 1 per 10ms

// hotLease keeps 10 tokens in reserve (100/s x 100ms) and lends up to 90.
var hotLease = limiter.LeasePolicy{MaxTokens: 16, TTL: 100 * time.Millisecond}

func newLeaseFleet(t *testing.T) (*storetest.Clock, *leaseStore, *limiter.Limiter) {
	t.Helper()
	clock := storetest.NewClock(time.Unix(1_700_000_000, 0))
	s := &leaseStore{MemoryStore: limiter.NewMemoryStore(limiter.WithMemoryClock(clock.Now))}
	return clock, s, limiter.New(s, limiter.WithClock(clock.Now))
}

// TestLeaseStoreFailure checks that lease mode keeps the store-failure
// semantics: a live lease still answers (its tokens were taken); once it
// lacks tokens, the call follows its policy (a degraded local answer or
// ErrStoreUnavailable), and after a failure the store is not called again
// until the health tracker's retry interval has passed.
func TestLeaseStoreFailure(t *testing.T) {
	clock, s, l := newLeaseFleet(t)
	ctx := context.Background()
	req := limiter.Request{Key: "k", Limit: hot, Cost: 1, Lease: hotLease}
	deny := req
	deny.OnStoreFailure = limiter.Deny
	for range 4 { // leases of 1, 2 and 4: 3 unused
		acquire(t, l, req)
	}
	s.fail.Store(true)
	for i := range 3 {
		if res := acquire(t, l, deny); !res.Allowed || res.Degraded {
			t.Fatalf("call %d from the live lease during an outage = %+v, want allowed, not degraded", i, res)
		}
	}
	before := s.leases.Load()
	if _, err := l.Acquire(ctx, deny); !errors.Is(err, limiter.ErrStoreUnavailable) {
		t.Fatalf("Deny call with the lease spent and the store down: error %v, want ErrStoreUnavailable", err)
	}
	if got := s.leases.Load() - before; got != 1 {
		t.Fatalf("the failing call made %d store calls, want 1", got)
	}
	res, err := l.Acquire(ctx, req)
	if err != nil || !res.Allowed || !res.Degraded {
		t.Fatalf("AllowLocal call with the store down = %+v, %v; want a degraded allowance", res, err)
	}
	if _, err := l.Acquire(ctx, deny); !errors.Is(err, storehealth.ErrDown) {
		t.Errorf("Deny call right after a failure: error %v, want storehealth.ErrDown (no store call)", err)
	}
	if got := s.leases.Load() - before; got != 1 {
		t.Errorf("calls after the failure reached the store %d times, want only the first failure", got-1)
	}
	// Back after the retry interval: leases again, exact answers.
	s.fail.Store(false)
	clock.Advance(storehealth.DefaultRetryInterval)
	if res := acquire(t, l, deny); !res.Allowed || res.Degraded {
		t.Errorf("after the store is back: %+v, want allowed, not degraded", res)
	}
}

// TestLeaseLateReply checks that a lease whose reply comes after its TTL is
// not used (the call follows its policy) and that its tokens go back with
// the next lease.
func TestLeaseLateReply(t *testing.T) {
	clock, s, l := newLeaseFleet(t)
	ctx := context.Background()
	req := limiter.Request{Key: "k", Limit: hot, Cost: 1, Lease: hotLease, OnStoreFailure: limiter.Deny}
	s.hook = func() { clock.Advance(hotLease.TTL) }
	if _, err := l.Acquire(ctx, req); !errors.Is(err, limiter.ErrLeaseLate) || !errors.Is(err, limiter.ErrStoreUnavailable) {
		t.Fatalf("Acquire with a late lease reply: error %v, want ErrLeaseLate and ErrStoreUnavailable", err)
	}
	s.hook = nil
	if res := acquire(t, l, req); !res.Allowed {
		t.Fatalf("next call = %+v, want allowed", res)
	}
	// The late lease's token went back: the bucket lost only this call's
	// (and Peek answers as if taking one more).
	peek, err := s.Peek(ctx, "k", hot, 1)
	if err != nil {
		t.Fatal(err)
	}
	if peek.Remaining != 98 {
		t.Errorf("after a late lease given back and one call, Peek = %+v, want 98 remaining", peek)
	}
}

// TestLeaseInvalid checks lease-mode validation: a bad policy names its
// field, and a cost above the lease capacity (burst less rate x ttl) is an
// invalid cost.
func TestLeaseInvalid(t *testing.T) {
	_, _, l := newLeaseFleet(t)
	wantInvalid(t, l, []invalid{
		{limiter.Request{Key: "k", Limit: hot, Cost: 91, Lease: hotLease}, "cost", nil},
		{limiter.Request{Key: "k", Limit: hot, Cost: 1, Lease: limiter.LeasePolicy{MaxTokens: 1}}, "lease.ttl", nil},
		{limiter.Request{Key: "k", Limit: hot, Cost: 1, Lease: limiter.LeasePolicy{MaxTokens: 1, TTL: time.Second}}, "lease.ttl", nil},
		{limiter.Request{Key: "k", Limit: hot, Cost: 1, Lease: limiter.LeasePolicy{MaxTokens: 91, TTL: 100 * time.Millisecond}}, "lease.max_tokens", nil},
		{limiter.Request{Key: "k", Limit: hot, Cost: 1, Lease: limiter.LeasePolicy{MaxTokens: -1, TTL: time.Second}}, "lease.max_tokens", nil},
	})
}

// takeOnly hides a store's Leaser.
type takeOnly struct{ limiter.Store }

// TestLeaseWithoutLeaser checks that a leased limit on a store without
// leases is decided call by call.
func TestLeaseWithoutLeaser(t *testing.T) {
	clock, s, _ := newLeaseFleet(t)
	l := limiter.New(takeOnly{s}, limiter.WithClock(clock.Now))
	for range 100 {
		acquire(t, l, limiter.Request{Key: "k", Limit: hot, Cost: 1, Lease: hotLease})
	}
	if res := acquire(t, l, limiter.Request{Key: "k", Limit: hot, Cost: 1, Lease: hotLease}); res.Allowed {
		t.Errorf("101st call = %+v, want denied (the whole burst, no reserve, without leases)", res)
	}
	if n := s.leases.Load(); n != 0 {
		t.Errorf("%d leases, want 0", n)
	}
}

// TestLeaseConcurrent runs many callers on one hot key of one replica with
// the clock stopped: they admit exactly the lease capacity, never more, and
// share lease round trips.
func TestLeaseConcurrent(t *testing.T) {
	_, s, l := newLeaseFleet(t)
	req := limiter.Request{Key: "k", Limit: hot, Cost: 1, Lease: hotLease}
	admitted, errs := testkit.CountParallel(16, 20, func(int) (int, error) {
		res, err := l.Acquire(context.Background(), req)
		if err != nil || res.Degraded {
			return 0, fmt.Errorf("Acquire = %+v, %v", res, err)
		}
		if res.Allowed {
			return 1, nil
		}
		return 0, nil
	})
	for _, err := range errs {
		t.Error(err)
	}
	if got, want := admitted, hotLease.LeaseCapacity(hot); got != want {
		t.Errorf("320 concurrent calls admitted %d, want the lease capacity %d", got, want)
	}
	if n := s.leases.Load(); n > 320/2 {
		t.Errorf("%d lease round trips for 320 calls, want far fewer than one per call", n)
	}
}
