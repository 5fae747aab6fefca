package limiter_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/topdeck/resilience/limiter"
	"github.com/topdeck/resilience/limiter/storetest"
)

// oneTokenPerHour has a burst of 1, so the second call reserves an hour.
var oneTokenPerHour = limiter.Limit{MaxCalls: 1, Window: time.Hour}

// TestWaitGivesBackOnCancel checks that a caller who gives up while
// holding a reservation gets its tokens given back.
func TestWaitGivesBackOnCancel(t *testing.T) {
	clock := storetest.NewClock(time.Unix(1_700_000_000, 0))
	store := limiter.NewMemoryStore(limiter.WithMemoryClock(clock.Now))
	l := limiter.New(store, limiter.WithClock(clock.Now))
	req := limiter.Request{Key: "k", Limit: oneTokenPerHour, Cost: 1, MaxWait: 2 * time.Hour}
	acquire(t, l, req)
	res := acquire(t, l, req)
	if !res.Allowed || res.Wait != time.Hour {
		t.Fatalf("second Acquire = %+v, want a reservation of 1h", res)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Wait(ctx, req, res); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with its context canceled: error = %v, want context.Canceled", err)
	}
	// As if the reservation had never been made: an hour to wait, not two.
	got, err := l.Peek(context.Background(), req)
	if want := (limiter.Result{RetryAfter: time.Hour, ResetAfter: time.Hour}); err != nil || got != want {
		t.Errorf("Peek after the canceled wait = (%+v, %v), want (%+v, nil)", got, err, want)
	}
}

// TestWaitWaits checks that Wait returns nil once the wait is over and
// keeps the tokens taken.
func TestWaitWaits(t *testing.T) {
	clock := storetest.NewClock(time.Unix(1_700_000_000, 0))
	store := limiter.NewMemoryStore(limiter.WithMemoryClock(clock.Now))
	l := limiter.New(store, limiter.WithClock(clock.Now))
	fast := limiter.Limit{MaxCalls: 1000, Window: time.Second, Burst: 1} // a token per ms
	req := limiter.Request{Key: "k", Limit: fast, Cost: 1, MaxWait: time.Second}
	acquire(t, l, req)
	res := acquire(t, l, req)
	if res.Wait != time.Millisecond {
		t.Fatalf("second Acquire = %+v, want a reservation of 1ms", res)
	}
	if err := l.Wait(context.Background(), req, res); err != nil {
		t.Fatalf("Wait = %v, want nil", err)
	}
	if err := l.Wait(context.Background(), req, limiter.Result{Allowed: true}); err != nil {
		t.Fatalf("Wait with no wait = %v, want nil", err)
	}
	got, err := l.Peek(context.Background(), req)
	if want := (limiter.Result{RetryAfter: 2 * time.Millisecond, ResetAfter: 2 * time.Millisecond}); err != nil || got != want {
		t.Errorf("Peek after the wait = (%+v, %v), want (%+v, nil): the reservation stays taken", got, err, want)
	}
}

// TestCancel checks Limiter.Cancel's cases: given back, already taken over,
// no reservation, degraded (the fallback's), and a store without Cancel.
func TestCancel(t *testing.T) {
	ctx := context.Background()
	req := limiter.Request{Key: "k", Limit: oneTokenPerHour, Cost: 1, MaxWait: 3 * time.Hour}

	t.Run("shared store", func(t *testing.T) {
		clock := storetest.NewClock(time.Unix(1_700_000_000, 0))
		l := limiter.New(limiter.NewMemoryStore(limiter.WithMemoryClock(clock.Now)), limiter.WithClock(clock.Now))
		first := acquire(t, l, req)
		r1 := acquire(t, l, req)
		r2 := acquire(t, l, req)
		for _, tt := range []struct {
			name string
			res  limiter.Result
			want bool
		}{
			{"not the last", r1, false},
			{"no reservation", first, false},
			{"the last", r2, true},
			{"twice", r2, false},
			{"the last again", r1, true},
		} {
			if got, err := l.Cancel(ctx, req, tt.res); err != nil || got != tt.want {
				t.Errorf("Cancel(%s) = (%v, %v), want (%v, nil)", tt.name, got, err, tt.want)
			}
		}
	})

	t.Run("degraded", func(t *testing.T) {
		l, store, _ := newTestLimiter(t)
		store.failWith(errBroken)
		acquire(t, l, req)
		res := acquire(t, l, req)
		if !res.Degraded || res.Wait != time.Hour {
			t.Fatalf("Acquire with the store down = %+v, want a degraded reservation", res)
		}
		if got, err := l.Cancel(ctx, req, res); err != nil || !got {
			t.Errorf("Cancel of a degraded reservation = (%v, %v), want (true, nil) from the fallback", got, err)
		}
	})

	t.Run("store without Cancel", func(t *testing.T) {
		l, _, _ := newTestLimiter(t) // countingStore has no Cancel
		acquire(t, l, req)
		res := acquire(t, l, req)
		if got, err := l.Cancel(ctx, req, res); err != nil || got {
			t.Errorf("Cancel on a store without Canceler = (%v, %v), want (false, nil)", got, err)
		}
	})
}

// TestCancelForgetsDenial checks that a reservation given back drops this
// Limiter's cached denial of its key, which the give-back made stale.
func TestCancelForgetsDenial(t *testing.T) {
	clock := storetest.NewClock(time.Unix(1_700_000_000, 0))
	l := limiter.New(limiter.NewMemoryStore(limiter.WithMemoryClock(clock.Now)), limiter.WithClock(clock.Now))
	ctx := context.Background()
	lim := limiter.Limit{MaxCalls: 2, Window: time.Hour} // burst 2
	wait := limiter.Request{Key: "k", Limit: lim, Cost: 1, MaxWait: time.Hour}
	acquire(t, l, limiter.Request{Key: "k", Limit: lim, Cost: 2})
	res := acquire(t, l, wait) // reserved: due in 30 min
	// Denied: a cost of 2 is not there for 1h30 (the cache remembers it).
	if got := acquire(t, l, limiter.Request{Key: "k", Limit: lim, Cost: 2}); got.Allowed || got.RetryAfter != 90*time.Minute {
		t.Fatalf("Acquire(cost 2) = %+v, want denied for 1h30", got)
	}
	if ok, err := l.Cancel(ctx, wait, res); err != nil || !ok {
		t.Fatalf("Cancel = (%v, %v), want (true, nil)", ok, err)
	}
	if got := acquire(t, l, limiter.Request{Key: "k", Limit: lim, Cost: 2}); got.Allowed || got.RetryAfter != time.Hour {
		t.Errorf("Acquire(cost 2) after the give-back = %+v, want denied for 1h (from the store, not the cache)", got)
	}
}
