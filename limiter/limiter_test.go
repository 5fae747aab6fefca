package limiter_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/topdeck/resilience/limiter"
	"github.com/topdeck/resilience/limiter/storetest"
)

// countingStore wraps a Store, counts calls and fails on demand.
type countingStore struct {
	inner limiter.Store
	takes atomic.Int64
	peeks atomic.Int64
	fail  atomic.Pointer[error]
}

func (s *countingStore) Take(ctx context.Context, key string, lim limiter.Limit, cost int64, maxWait time.Duration) (limiter.Result, error) {
	s.takes.Add(1)
	if err := s.fail.Load(); err != nil {
		return limiter.Result{}, *err
	}
	return s.inner.Take(ctx, key, lim, cost, maxWait)
}

func (s *countingStore) Peek(ctx context.Context, key string, lim limiter.Limit, cost int64) (limiter.Result, error) {
	s.peeks.Add(1)
	if err := s.fail.Load(); err != nil {
		return limiter.Result{}, *err
	}
	return s.inner.Peek(ctx, key, lim, cost)
}

func (s *countingStore) failWith(err error) { s.fail.Store(&err) }

var errBroken = errors.New("connection refused")

var lim5 = limiter.Limit{MaxCalls: 10, Window: time.Second, Burst: 5}

func newTestLimiter(t *testing.T, opts ...limiter.Option) (*limiter.Limiter, *countingStore, *storetest.Clock) {
	t.Helper()
	clock := storetest.NewClock(time.Unix(1_700_000_000, 0))
	store := &countingStore{inner: limiter.NewMemoryStore(limiter.WithMemoryClock(clock.Now))}
	l := limiter.New(store, append([]limiter.Option{limiter.WithClock(clock.Now)}, opts...)...)
	return l, store, clock
}

func acquire(t *testing.T, l *limiter.Limiter, req limiter.Request) limiter.Result {
	t.Helper()
	res, err := l.Acquire(context.Background(), req)
	if err != nil {
		t.Fatalf("Acquire(%+v): %v", req, err)
	}
	return res
}

// invalid is a request Acquire must refuse with an InvalidArgumentError
// naming field (which matches ErrInvalidArgument), and, when is is set, an
// error matching is too.
type invalid struct {
	req   limiter.Request
	field string
	is    error
}

// wantInvalid calls Acquire with each request of tests and checks its
// error.
func wantInvalid(t *testing.T, l *limiter.Limiter, tests []invalid) {
	t.Helper()
	for _, tt := range tests {
		_, err := l.Acquire(context.Background(), tt.req)
		if !storetest.InvalidFor(err, tt.field) || !errors.Is(err, limiter.ErrInvalidArgument) {
			t.Errorf("Acquire(%+v): error = %v, want an InvalidArgumentError for %s", tt.req, err, tt.field)
		}
		if tt.is != nil && !errors.Is(err, tt.is) {
			t.Errorf("Acquire(%+v): error = %v, want it to match %v", tt.req, err, tt.is)
		}
	}
}

func TestAcquireAllowLocalFallback(t *testing.T) {
	l, store, _ := newTestLimiter(t)
	req := limiter.Request{Key: "k", Limit: limiter.Limit{MaxCalls: 10, Window: time.Second, Burst: 2}, Cost: 1}
	if got := acquire(t, l, req); !got.Allowed || got.Degraded {
		t.Fatalf("Acquire with a healthy store = %+v, want allowed, not degraded", got)
	}
	store.failWith(errBroken)
	want := []limiter.Result{
		{Allowed: true, Remaining: 1, ResetAfter: 100 * time.Millisecond, Degraded: true},
		{Allowed: true, Remaining: 0, ResetAfter: 200 * time.Millisecond, Degraded: true},
		{RetryAfter: 100 * time.Millisecond, ResetAfter: 200 * time.Millisecond, Degraded: true},
	}
	for i, w := range want {
		if got := acquire(t, l, req); got != w {
			t.Errorf("call %d with the store down: got %+v, want %+v", i, got, w)
		}
	}
	res, err := l.Peek(context.Background(), req)
	if w := want[2]; err != nil || res != w {
		t.Errorf("Peek with the store down = (%+v, %v), want (%+v, nil)", res, err, w)
	}
}

func TestAcquireDenyPolicy(t *testing.T) {
	l, store, _ := newTestLimiter(t)
	store.failWith(errBroken)
	req := limiter.Request{Key: "k", Limit: lim5, Cost: 1, OnStoreFailure: limiter.Deny}
	res, err := l.Acquire(context.Background(), req)
	if !errors.Is(err, limiter.ErrStoreUnavailable) || !errors.Is(err, errBroken) {
		t.Errorf("Acquire(Deny) with the store down = (%+v, %v), want an error wrapping ErrStoreUnavailable and the cause", res, err)
	}
	if _, err := l.Peek(context.Background(), req); !errors.Is(err, limiter.ErrStoreUnavailable) {
		t.Errorf("Peek(Deny) with the store down: error = %v, want ErrStoreUnavailable", err)
	}
}

func TestAcquireContextError(t *testing.T) {
	l, store, _ := newTestLimiter(t)
	store.failWith(context.DeadlineExceeded)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := l.Acquire(ctx, limiter.Request{Key: "k", Limit: lim5, Cost: 1})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, limiter.ErrStoreUnavailable) {
		t.Errorf("Acquire past the deadline: error = %v, want context.DeadlineExceeded and not ErrStoreUnavailable", err)
	}
}

func TestAcquireInvalid(t *testing.T) {
	l, store, _ := newTestLimiter(t)
	wantInvalid(t, l, []invalid{
		{limiter.Request{Limit: limiter.Limit{Window: time.Second}, Cost: 1}, "max_calls", nil},
		{limiter.Request{Limit: limiter.Limit{MaxCalls: 1}, Cost: 1}, "time_window", nil},
		{limiter.Request{Limit: lim5, Cost: 6}, "cost", limiter.ErrCostExceedsBurst},
		{limiter.Request{Limit: lim5, Cost: 1, MaxWait: -time.Second}, "max_wait", nil},
		{limiter.Request{Limit: lim5, Cost: 1, OnStoreFailure: 7}, "on_store_failure", nil},
	})
	if n := store.takes.Load(); n != 0 {
		t.Errorf("store called %d times for invalid requests, want 0", n)
	}
}

func TestValidateMessages(t *testing.T) {
	tests := []struct {
		lim  limiter.Limit
		want string
	}{
		{limiter.Limit{}, "limiter: max_calls must be at least 1, got 0"},
		{limiter.Limit{MaxCalls: 1, Window: -time.Second}, "limiter: time_window must be positive, got -1s"},
		{limiter.Limit{MaxCalls: 1, Window: time.Second, Burst: -2}, "limiter: burst must be 0 (meaning max_calls) or more, got -2"},
		{limiter.Limit{MaxCalls: 1, Window: 1500 * time.Nanosecond}, "limiter: time_window must be a whole number of microseconds, got 1.5µs"},
		{limiter.Limit{MaxCalls: 1, Window: time.Second, Burst: 1 << 40}, "limiter: burst must be between 1 and 2251799813 for 1 calls per 1s, got 1099511627776"},
		// A window that max_calls does not divide into whole microseconds
		// needs fractions; with a long window they outgrow exact arithmetic.
		// The burst was never set: say so, and what to set it to.
		{limiter.Limit{MaxCalls: 99_991, Window: 24 * time.Hour}, "limiter: burst must be set, between 1 and 26062, for 99991 calls per 24h0m0s: unset, it means max_calls (99991), more than a bucket of that rate can hold"},
		// Issue 13: 1 call per 100 years, burst unset. No burst helps: the
		// window is what must change, and the message says to what.
		{limiter.Limit{MaxCalls: 1, Window: 876000 * time.Hour}, "limiter: time_window is too long for max_calls 1: must be at most 625499h56m53.685248s (2^51µs, about 71 years), got 876000h0m0s (about 100 years)"},
		{limiter.Limit{MaxCalls: 1, Window: 876000 * time.Hour, Burst: 1}, "limiter: time_window is too long for max_calls 1: must be at most 625499h56m53.685248s (2^51µs, about 71 years), got 876000h0m0s (about 100 years)"},
		// A 10,000-year window saturates a time.Duration: too long, not "not
		// a whole number of microseconds".
		{limiter.Limit{MaxCalls: 1, Window: 1<<63 - 1}, "limiter: time_window is too long: at most 2562047h47m16.854775s (about 292 years) can be represented, got 2562047h47m16.854775807s or more"},
		{limiter.Limit{MaxCalls: 1 << 62, Window: time.Microsecond}, "limiter: max_calls must be at most 2251799813685248 (2^51) after dividing max_calls and time_window in microseconds by their greatest common divisor (1 here), got 4611686018427387904"},
	}
	for _, tt := range tests {
		err := tt.lim.Validate()
		if err == nil || err.Error() != tt.want {
			t.Errorf("%+v.Validate() = %v, want %q", tt.lim, err, tt.want)
		}
	}
	// No message shows an empty range.
	for _, l := range []limiter.Limit{
		{MaxCalls: 1, Window: 100 * 365 * 24 * time.Hour},
		{MaxCalls: 3, Window: 200 * 365 * 24 * time.Hour},
		{MaxCalls: 7, Window: 80*365*24*time.Hour + time.Microsecond, Burst: 3},
	} {
		if err := l.Validate(); err == nil || strings.Contains(err.Error(), "<= 0") || strings.Contains(err.Error(), "between 1 and 0") {
			t.Errorf("%+v.Validate() = %v, want an error that says what is allowed", l, err)
		}
	}
	// Large but realistic limits are fine.
	for _, l := range []limiter.Limit{
		{MaxCalls: 100_000, Window: 24 * time.Hour},
		{MaxCalls: 99_991, Window: 24 * time.Hour, Burst: 20_000},
		{MaxCalls: 12_345, Window: time.Hour},
		{MaxCalls: 7, Window: time.Second},
		{MaxCalls: 1_000_000, Window: time.Second},
		{MaxCalls: 1000, Window: 365 * 24 * time.Hour},
	} {
		if err := l.Validate(); err != nil {
			t.Errorf("%+v.Validate() = %v, want nil", l, err)
		}
	}
}

func TestDenyCache(t *testing.T) {
	l, store, clock := newTestLimiter(t)
	inner := store.inner
	req := limiter.Request{Key: "k", Limit: lim5, Cost: 2}
	acquire(t, l, limiter.Request{Key: "k", Limit: lim5, Cost: 4})
	// The store denies cost 2: 100ms to go.
	if got, want := acquire(t, l, req), (limiter.Result{Remaining: 1, RetryAfter: 100 * time.Millisecond, ResetAfter: 400 * time.Millisecond}); got != want {
		t.Fatalf("denial from the store = %+v, want %+v", got, want)
	}
	takes := store.takes.Load()

	steps := []struct {
		name      string
		advance   time.Duration
		req       limiter.Request
		fromCache bool
	}{
		{"same cost, same time", 0, req, true},
		{"same cost, later", 30 * time.Millisecond, req, true},
		{"larger cost", 0, limiter.Request{Key: "k", Limit: lim5, Cost: 5}, true},
		{"would wait too little", 0, limiter.Request{Key: "k", Limit: lim5, Cost: 2, MaxWait: 69 * time.Millisecond}, true},
		{"smaller cost", 0, limiter.Request{Key: "k", Limit: lim5, Cost: 1}, false},
		{"other key", 0, limiter.Request{Key: "k2", Limit: lim5, Cost: 2}, false},
		{"other limit", 0, limiter.Request{Key: "k", Limit: limiter.Limit{MaxCalls: 10, Window: time.Second, Burst: 6}, Cost: 2}, false},
		{"would wait long enough", 0, limiter.Request{Key: "k", Limit: lim5, Cost: 2, MaxWait: 200 * time.Millisecond}, false},
		{"expired", 300 * time.Millisecond, req, false},
	}
	for _, st := range steps {
		clock.Advance(st.advance)
		// What the store would say, without changing it.
		want, err := inner.Peek(context.Background(), st.req.Key, st.req.Limit, st.req.Cost)
		if err != nil {
			t.Fatal(err)
		}
		got := acquire(t, l, st.req)
		called := store.takes.Load() != takes
		takes = store.takes.Load()
		if called == st.fromCache {
			t.Errorf("%s: store called = %v, want %v", st.name, called, !st.fromCache)
		}
		if st.fromCache && (got.Allowed || want.Allowed) {
			t.Errorf("%s: cached answer %+v, store would say %+v: want both denied", st.name, got, want)
		}
		if st.fromCache && st.req.Cost == req.Cost && got != want {
			t.Errorf("%s: cached answer %+v, want exactly the store's %+v", st.name, got, want)
		}
	}
}

// TestDenyCacheNeverDeniesAdmissible runs several Limiters (replicas) with
// their own deny caches over one shared store, and checks every cached denial
// against what the store would answer at that instant. Each key is used under
// one limit, as the deny cache's promise requires (see
// TestDenyCacheAcrossLimitChanges for keys shared by several limits).
func TestDenyCacheNeverDeniesAdmissible(t *testing.T) {
	checkDenyCache(t, false)
}

// TestDenyCacheAcrossLimitChanges checks the deny cache on keys used under
// several limits, where a charge under one limit can move a bucket's state
// back as another sees it: a cached denial is still a denial the store gave,
// never an admission, and never refuses longer than a drained bucket of its
// own limit plus the longest reservation made would.
func TestDenyCacheAcrossLimitChanges(t *testing.T) {
	checkDenyCache(t, true)
}

func checkDenyCache(t *testing.T, mixLimits bool) {
	clock := storetest.NewClock(time.Unix(1_700_000_000, 0))
	shared := limiter.NewMemoryStore(limiter.WithMemoryClock(clock.Now))
	store := &countingStore{inner: shared}
	var replicas []*limiter.Limiter
	for range 3 {
		replicas = append(replicas, limiter.New(store, limiter.WithClock(clock.Now)))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	limits := []limiter.Limit{lim5, {MaxCalls: 3, Window: time.Second}, {MaxCalls: 7, Window: 700 * time.Millisecond, Burst: 2}}
	var cached int
	for i := range 5000 {
		clock.Advance(time.Duration(rng.IntN(40_000)) * time.Microsecond)
		k := rng.IntN(len(limits))
		lim := limits[k]
		if mixLimits {
			lim = limits[rng.IntN(len(limits))]
		}
		req := limiter.Request{
			Key:   fmt.Sprint("k", k),
			Limit: lim,
			Cost:  1 + rng.Int64N(lim.Normalized().Burst),
		}
		if rng.IntN(5) == 0 {
			req.MaxWait = time.Duration(rng.IntN(300)) * time.Millisecond
		}
		want, err := shared.Peek(context.Background(), req.Key, req.Limit, req.Cost)
		if err != nil {
			t.Fatal(err)
		}
		before := store.takes.Load()
		got := acquire(t, replicas[rng.IntN(len(replicas))], req)
		if store.takes.Load() != before {
			continue // the store decided
		}
		cached++
		if got.Allowed {
			t.Fatalf("call %d: cached answer %+v is an admission", i, got)
		}
		if mixLimits {
			p := lim.Params()
			drained := time.Duration((req.Cost*p.W+p.M-1)/p.M) * time.Microsecond
			if bound := drained + 300*time.Millisecond; got.RetryAfter > bound {
				t.Fatalf("call %d (%+v): cached RetryAfter %v, more than a drained bucket's %v plus the longest reservation", i, req, got.RetryAfter, drained)
			}
			continue
		}
		if want.Allowed {
			t.Fatalf("call %d (%+v): cached denial %+v, but the store would admit: %+v", i, req, got, want)
		}
		if got.RetryAfter > want.RetryAfter {
			t.Fatalf("call %d (%+v): cached RetryAfter %v later than the store's %v", i, req, got.RetryAfter, want.RetryAfter)
		}
	}
	if cached == 0 {
		t.Fatal("no answer came from the deny cache; the test checks nothing")
	}
	t.Logf("%d of 5000 answers from deny caches", cached)
}

func TestDenyCacheDisabled(t *testing.T) {
	l, store, _ := newTestLimiter(t, limiter.WithDenyCacheSize(0))
	req := limiter.Request{Key: "k", Limit: lim5, Cost: 5}
	for range 3 {
		acquire(t, l, req)
	}
	if got := store.takes.Load(); got != 3 {
		t.Errorf("store called %d times, want 3 (no deny cache)", got)
	}
}

func TestMemoryStoreSweeps(t *testing.T) {
	clock := storetest.NewClock(time.Unix(1_700_000_000, 0))
	s := limiter.NewMemoryStore(limiter.WithMemoryClock(clock.Now))
	ctx := context.Background()
	for i := range 1000 {
		if _, err := s.Take(ctx, fmt.Sprint("k", i), lim5, 1, 0); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(100 * time.Millisecond) // every bucket full again
	for range 2000 {
		if _, err := s.Take(ctx, "hot", lim5, 1, 0); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Len(); got > 64 {
		t.Errorf("Len after idle buckets were swept = %d, want only busy ones", got)
	}
}
