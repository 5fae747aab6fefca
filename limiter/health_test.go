package limiter_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/topdeck/resilience/internal/storehealth"
	"github.com/topdeck/resilience/limiter"
	"github.com/topdeck/resilience/limiter/storetest"
)

// hangingStore is a Store whose calls block until the test lets each one
// go with an error (a hung Redis whose calls time out) or, once fixed, pass
// to a MemoryStore.
type hangingStore struct {
	inner   *limiter.MemoryStore
	calls   atomic.Int64
	entered chan struct{} // receives once per call that reached the store
	release chan error    // one error per hung call
	fixed   atomic.Bool   // when true, calls pass to inner at once
}

func newHangingStore(now func() time.Time) *hangingStore {
	return &hangingStore{
		inner:   limiter.NewMemoryStore(limiter.WithMemoryClock(now)),
		entered: make(chan struct{}, 100),
		release: make(chan error, 100),
	}
}

func (s *hangingStore) wait(ctx context.Context) error {
	s.calls.Add(1)
	if s.fixed.Load() {
		return nil
	}
	s.entered <- struct{}{}
	select {
	case err := <-s.release:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *hangingStore) Take(ctx context.Context, key string, lim limiter.Limit, cost int64, maxWait time.Duration) (limiter.Result, error) {
	if err := s.wait(ctx); err != nil {
		return limiter.Result{}, err
	}
	return s.inner.Take(ctx, key, lim, cost, maxWait)
}

func (s *hangingStore) Peek(ctx context.Context, key string, lim limiter.Limit, cost int64) (limiter.Result, error) {
	if err := s.wait(ctx); err != nil {
		return limiter.Result{}, err
	}
	return s.inner.Peek(ctx, key, lim, cost)
}

var errTimeout = errors.New("i/o timeout")

// TestHungStoreCostsOneTimeout checks that once a call to a hung store has
// failed, calls skip the store and are answered at once by their policy,
// one probe per retry interval goes to the store, and the first probe that
// succeeds brings exact answers back.
func TestHungStoreCostsOneTimeout(t *testing.T) {
	clock := storetest.NewClock(time.Unix(1_700_000_000, 0))
	store := newHangingStore(clock.Now)
	l := limiter.New(store, limiter.WithClock(clock.Now))
	ctx := context.Background()
	allowLocal := limiter.Request{Key: "k", Limit: lim5, Cost: 1}
	deny := limiter.Request{Key: "k", Limit: lim5, Cost: 1, OnStoreFailure: limiter.Deny}

	// The first call hangs until its store call times out.
	type answer struct {
		res limiter.Result
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := l.Acquire(ctx, allowLocal)
		done <- answer{res, err}
	}()
	<-store.entered
	store.release <- errTimeout
	if a := <-done; a.err != nil || !a.res.Degraded || !a.res.Allowed {
		t.Fatalf("first Acquire with the store hung = (%+v, %v), want allowed and degraded", a.res, a.err)
	}
	if l.Health().Healthy() {
		t.Fatal("Health().Healthy() after a store failure = true, want false")
	}

	// Every call now answers without the store: had one reached it, it
	// would block (nothing releases it) and the test would not end.
	for i := range 20 {
		if _, err := l.Acquire(ctx, deny); !errors.Is(err, limiter.ErrStoreUnavailable) || !errors.Is(err, storehealth.ErrDown) {
			t.Fatalf("Acquire(Deny) %d while the store is down: error = %v, want ErrStoreUnavailable and storehealth.ErrDown", i, err)
		}
		res, err := l.Acquire(ctx, allowLocal)
		if err != nil || !res.Degraded {
			t.Fatalf("Acquire(AllowLocal) %d while the store is down = (%+v, %v), want a degraded answer", i, res, err)
		}
		if _, err := l.Peek(ctx, deny); !errors.Is(err, limiter.ErrStoreUnavailable) {
			t.Fatalf("Peek(Deny) %d while the store is down: error = %v, want ErrStoreUnavailable", i, err)
		}
	}
	if got := store.calls.Load(); got != 1 {
		t.Fatalf("store called %d times, want 1 (only the first call)", got)
	}

	// After the retry interval one probe goes to the store; it fails too.
	clock.Advance(storehealth.DefaultRetryInterval)
	go func() {
		res, err := l.Acquire(ctx, deny)
		done <- answer{res, err}
	}()
	<-store.entered
	// While the probe hangs, other calls still skip the store.
	if res, err := l.Acquire(ctx, allowLocal); err != nil || !res.Degraded {
		t.Fatalf("Acquire during the probe = (%+v, %v), want a degraded answer", res, err)
	}
	store.release <- errTimeout
	if a := <-done; !errors.Is(a.err, limiter.ErrStoreUnavailable) {
		t.Fatalf("probe Acquire(Deny) = (%+v, %v), want ErrStoreUnavailable", a.res, a.err)
	}
	if got := store.calls.Load(); got != 2 {
		t.Fatalf("store called %d times, want 2", got)
	}

	// The store answers again: the next probe brings exact answers back.
	store.fixed.Store(true)
	clock.Advance(storehealth.DefaultRetryInterval)
	for i := range 3 {
		res, err := l.Acquire(ctx, deny)
		if err != nil || res.Degraded || !res.Allowed {
			t.Fatalf("Acquire %d after the store came back = (%+v, %v), want an exact admission", i, res, err)
		}
	}
	if got := store.calls.Load(); got != 5 {
		t.Fatalf("store called %d times, want 5", got)
	}
}

// TestCallerContextIsNotAStoreFailure checks that a caller who gives up
// while the store is slow does not mark the store down.
func TestCallerContextIsNotAStoreFailure(t *testing.T) {
	clock := storetest.NewClock(time.Unix(1_700_000_000, 0))
	store := newHangingStore(clock.Now)
	l := limiter.New(store, limiter.WithClock(clock.Now))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := l.Acquire(ctx, limiter.Request{Key: "k", Limit: lim5, Cost: 1})
		done <- err
	}()
	<-store.entered
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with its context canceled: error = %v, want context.Canceled", err)
	}
	if !l.Health().Healthy() {
		t.Fatal("store marked down after a caller gave up")
	}
	store.fixed.Store(true)
	res, err := l.Acquire(context.Background(), limiter.Request{Key: "k", Limit: lim5, Cost: 1})
	if err != nil || res.Degraded {
		t.Fatalf("next Acquire = (%+v, %v), want an exact answer from the store", res, err)
	}
}

// TestHealthTrackingOff checks that WithHealthTracker(nil) sends every call
// to the store.
func TestHealthTrackingOff(t *testing.T) {
	l, store, _ := newTestLimiter(t, limiter.WithHealthTracker(nil))
	store.failWith(errBroken)
	for range 5 {
		acquire(t, l, limiter.Request{Key: "k", Limit: lim5, Cost: 1})
	}
	if got := store.takes.Load(); got != 5 {
		t.Errorf("store called %d times, want 5 (no health tracking)", got)
	}
}

// TestInvalidArgumentIsNotAStoreFailure checks that a store's
// InvalidArgumentError does not mark it down.
func TestInvalidArgumentIsNotAStoreFailure(t *testing.T) {
	l, store, _ := newTestLimiter(t)
	store.failWith(&limiter.InvalidArgumentError{Field: "cost", Reason: "test"})
	if _, err := l.Acquire(context.Background(), limiter.Request{Key: "k", Limit: lim5, Cost: 1}); !errors.Is(err, limiter.ErrInvalidArgument) {
		t.Fatalf("error = %v, want ErrInvalidArgument", err)
	}
	if !l.Health().Healthy() {
		t.Error("store marked down by an invalid argument")
	}
}

// TestStoreTimeoutBoundsTheWholeCall: a store that never answers (a call
// queued behind hung pipelines waits for a free one, then for its own round
// trip) is given up after WithStoreTimeout, counting from when the Limiter
// asked; the call is a store failure answered by its policy, and the
// caller's own deadline, far away, is not what ended it.
func TestStoreTimeoutBoundsTheWholeCall(t *testing.T) {
	st := newHangingStore(time.Now)
	l := limiter.New(st, limiter.WithStoreTimeout(20*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lim, err := limiter.NewLimit(10, time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Acquire(ctx, limiter.Request{Key: "k", Limit: lim, Cost: 1, OnStoreFailure: limiter.Deny})
	if !errors.Is(err, limiter.ErrStoreUnavailable) {
		t.Fatalf("Acquire on a store that never answers: got %v, want ErrStoreUnavailable", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("the caller's minute-long deadline ran out: the store timeout did not bound the call")
	}
	if l.Health().Healthy() {
		t.Errorf("store still healthy after a call it never answered: a timeout is a store failure")
	}
	res, err := l.Acquire(ctx, limiter.Request{Key: "k", Limit: lim, Cost: 1, OnStoreFailure: limiter.AllowLocal})
	if err != nil || !res.Allowed || !res.Degraded {
		t.Errorf("allow_local after the failure: got %+v, %v; want an allowed, degraded local answer", res, err)
	}
	// A dry run is bounded alike (a fresh Limiter: its tracker has not seen
	// the store fail).
	peeker := limiter.New(st, limiter.WithStoreTimeout(20*time.Millisecond))
	if _, err := peeker.Peek(ctx, limiter.Request{Key: "k", Limit: lim, Cost: 1, OnStoreFailure: limiter.Deny}); !errors.Is(err, limiter.ErrStoreUnavailable) || ctx.Err() != nil {
		t.Errorf("Peek on a store that never answers: got %v (caller's deadline: %v), want ErrStoreUnavailable within the store timeout", err, ctx.Err())
	}
}

// stuckStore is a MemoryStore whose calls other than Take and Peek (see
// hangingStore for those), once stuck is set, wait for their context to end
// (a Redis that stopped answering).
type stuckStore struct {
	*limiter.MemoryStore
	stuck atomic.Bool
}

func (s *stuckStore) block(ctx context.Context) error {
	if !s.stuck.Load() {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

func (s *stuckStore) Cancel(ctx context.Context, key string, lim limiter.Limit, res limiter.Reservation) (bool, error) {
	return false, s.block(ctx)
}

func (s *stuckStore) Lease(ctx context.Context, key string, lim limiter.Limit, req limiter.LeaseRequest) (limiter.LeaseGrant, error) {
	return limiter.LeaseGrant{}, s.block(ctx)
}

func (s *stuckStore) TakeAll(ctx context.Context, reqs []limiter.Request, o limiter.TakeAllOptions) (limiter.MultiResult, error) {
	return limiter.MultiResult{}, s.block(ctx)
}

func (s *stuckStore) PeekAll(ctx context.Context, reqs []limiter.Request) (limiter.MultiResult, error) {
	return limiter.MultiResult{}, s.block(ctx)
}

func (s *stuckStore) ReleaseSlots(ctx context.Context, keys []string, id string) (int64, error) {
	return 0, s.block(ctx)
}

func (s *stuckStore) Pause(ctx context.Context, key string, lim limiter.Limit, pause time.Duration, remaining int64) (limiter.PauseResult, error) {
	return limiter.PauseResult{}, s.block(ctx)
}

// TestStoreTimeoutBoundsEveryStoreCall: the Limiter's other calls to a
// store that stopped answering (several limits, leases, give-backs, slot
// releases, upstream pauses; Acquire and Peek are above) are given up after
// WithStoreTimeout as store failures, long before the caller's own
// deadline; each on a fresh Limiter, whose health tracker has not yet seen
// the store fail.
func TestStoreTimeoutBoundsEveryStoreCall(t *testing.T) {
	lim, err := limiter.NewLimit(1, time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	deny := limiter.Request{Key: "k", Limit: lim, Cost: 1, OnStoreFailure: limiter.Deny}
	leased := limiter.Request{Key: "hot", Limit: hot, Cost: 1, Lease: hotLease, OnStoreFailure: limiter.Deny}
	for _, tc := range []struct {
		name string
		call func(ctx context.Context, t *testing.T, l *limiter.Limiter, st *stuckStore) error
	}{
		{"AcquireAll", func(ctx context.Context, _ *testing.T, l *limiter.Limiter, _ *stuckStore) error {
			_, err := l.AcquireAll(ctx, []limiter.Request{deny}, 0)
			return err
		}},
		{"PeekAll", func(ctx context.Context, _ *testing.T, l *limiter.Limiter, _ *stuckStore) error {
			_, err := l.PeekAll(ctx, []limiter.Request{deny})
			return err
		}},
		{"Acquire with a lease", func(ctx context.Context, _ *testing.T, l *limiter.Limiter, _ *stuckStore) error {
			_, err := l.Acquire(ctx, leased)
			return err
		}},
		{"ReleaseSlots", func(ctx context.Context, _ *testing.T, l *limiter.Limiter, _ *stuckStore) error {
			_, err := l.ReleaseSlots(ctx, []string{"k"}, limiter.NewSlotID(), false)
			return err
		}},
		{"Pause", func(ctx context.Context, _ *testing.T, l *limiter.Limiter, _ *stuckStore) error {
			_, err := l.Pause(ctx, "k", limiter.Feedback{RetryAfter: time.Second}, limiter.Deny)
			return err
		}},
		{"Cancel", func(ctx context.Context, t *testing.T, l *limiter.Limiter, st *stuckStore) error {
			// A reservation taken while the store answered, given back
			// after it stopped.
			wait := deny
			wait.MaxWait = 2 * time.Hour
			if _, err := l.Acquire(ctx, wait); err != nil {
				return err
			}
			res, err := l.Acquire(ctx, wait)
			if err != nil || res.Wait <= 0 || res.Reservation.IsZero() {
				t.Fatalf("setting up a reservation: %+v, %v", res, err)
			}
			st.stuck.Store(true)
			_, err = l.Cancel(ctx, wait, res)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &stuckStore{MemoryStore: limiter.NewMemoryStore()}
			st.stuck.Store(tc.name != "Cancel")
			l := limiter.New(st, limiter.WithStoreTimeout(20*time.Millisecond))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := tc.call(ctx, t, l, st)
			if !errors.Is(err, limiter.ErrStoreUnavailable) {
				t.Errorf("%s on a store that stopped answering: got %v, want ErrStoreUnavailable", tc.name, err)
			}
			if ctx.Err() != nil {
				t.Errorf("%s waited out the caller's 30 s deadline: the store timeout did not bound it", tc.name)
			}
			if l.Health().Healthy() {
				t.Errorf("%s: the store is still healthy after a call it never answered", tc.name)
			}
		})
	}
}

// boundedStore is a MemoryStore that says it bounds its own decisions by
// bound, and records whether each decision's context had a deadline.
type boundedStore struct {
	*limiter.MemoryStore
	bound       time.Duration
	hadDeadline []bool
}

func (s *boundedStore) DecisionBound() time.Duration { return s.bound }

func (s *boundedStore) Take(ctx context.Context, key string, lim limiter.Limit, cost int64, maxWait time.Duration) (limiter.Result, error) {
	_, ok := ctx.Deadline()
	s.hadDeadline = append(s.hadDeadline, ok)
	return s.MemoryStore.Take(ctx, key, lim, cost, maxWait)
}

func (s *boundedStore) Peek(ctx context.Context, key string, lim limiter.Limit, cost int64) (limiter.Result, error) {
	_, ok := ctx.Deadline()
	s.hadDeadline = append(s.hadDeadline, ok)
	return s.MemoryStore.Peek(ctx, key, lim, cost)
}

// TestSelfBoundedStoreDecidesUnderCallerContext: a store that keeps the
// store timeout on its own decisions (limiter.SelfBounded, as the batching
// Redis store does) gets the caller's context as it is for Take and Peek;
// one whose bound is longer than the store timeout, or none, gets the
// Limiter's timeout on top.
func TestSelfBoundedStoreDecidesUnderCallerContext(t *testing.T) {
	lim, err := limiter.NewLimit(10, time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	req := limiter.Request{Key: "k", Limit: lim, Cost: 1}
	for _, tc := range []struct {
		name         string
		bound        time.Duration
		wantDeadline bool
	}{
		{"bound within the store timeout", 100 * time.Millisecond, false},
		{"bound equal to the store timeout", 200 * time.Millisecond, false},
		{"bound longer than the store timeout", 300 * time.Millisecond, true},
		{"no bound", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &boundedStore{MemoryStore: limiter.NewMemoryStore(), bound: tc.bound}
			l := limiter.New(st, limiter.WithStoreTimeout(200*time.Millisecond), limiter.WithDenyCacheSize(0))
			if _, err := l.Acquire(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Peek(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			for i, got := range st.hadDeadline {
				if got != tc.wantDeadline {
					t.Errorf("decision %d (Take, then Peek): context had a deadline: %v, want %v", i, got, tc.wantDeadline)
				}
			}
			if len(st.hadDeadline) != 2 {
				t.Errorf("%d decisions reached the store, want 2", len(st.hadDeadline))
			}
		})
	}
}
