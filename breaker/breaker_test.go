package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/breaker/storetest"
)

// flakyStore is a fake Store: a MemoryStore that answers
// ErrStoreUnavailable while down is set.
type flakyStore struct {
	*breaker.MemoryStore
	down atomic.Bool
}

var errDown = fmt.Errorf("%w: fake outage", breaker.ErrStoreUnavailable)

func (f *flakyStore) Allow(ctx context.Context, name string, s breaker.Settings) (breaker.Admission, error) {
	if f.down.Load() {
		return breaker.Admission{}, errDown
	}
	return f.MemoryStore.Allow(ctx, name, s)
}

func (f *flakyStore) Report(ctx context.Context, name string, s breaker.Settings, o breaker.Outcome, gen uint64, permit string) (breaker.ReportResult, error) {
	if f.down.Load() {
		return breaker.ReportResult{}, errDown
	}
	return f.MemoryStore.Report(ctx, name, s, o, gen, permit)
}

func (f *flakyStore) Status(ctx context.Context, name string, s breaker.Settings) (breaker.Status, error) {
	if f.down.Load() {
		return breaker.Status{}, errDown
	}
	return f.MemoryStore.Status(ctx, name, s)
}

func (f *flakyStore) Reset(ctx context.Context, name string, s breaker.Settings, to breaker.State) (breaker.Status, error) {
	if f.down.Load() {
		return breaker.Status{}, errDown
	}
	return f.MemoryStore.Reset(ctx, name, s, to)
}

// newFlakyBreaker returns a Breaker on a flakyStore, both reading a clock
// that starts at storetest.Epoch; the Breaker tries a failed store again
// after retry. Both are closed when t ends.
func newFlakyBreaker(t *testing.T, retry time.Duration) (*storetest.Clock, *flakyStore, *breaker.Breaker) {
	t.Helper()
	clock := storetest.NewClock(storetest.Epoch)
	store := &flakyStore{MemoryStore: breaker.NewMemoryStore(breaker.WithMemoryClock(clock.Now))}
	b := breaker.New(store, breaker.WithClock(clock.Now), breaker.WithStoreRetryInterval(retry))
	t.Cleanup(func() { _ = b.Close(); _ = store.Close() })
	return clock, store, b
}

var pol = breaker.Settings{FailureThreshold: 2, RecoveryTimeout: 10 * time.Second, ProbeTimeout: time.Second}

func TestBreakerFallsBackWhenStoreIsDown(t *testing.T) {
	ctx := context.Background()
	clock, store, b := newFlakyBreaker(t, time.Second)

	// The shared breaker is OPEN.
	if _, err := store.Reset(ctx, "b", pol, breaker.StateOpen); err != nil {
		t.Fatal(err)
	}
	a, err := b.Allow(ctx, "b", pol)
	if err != nil || a.Allowed || a.Degraded {
		t.Fatalf("Allow with the store up: got %+v, %v; want denied, not degraded", a, err)
	}

	// Store down: the local breaker decides, and it is CLOSED.
	store.down.Store(true)
	a, err = b.Allow(ctx, "b", pol)
	if err != nil || !a.Allowed || !a.Degraded || a.State != breaker.StateClosed || a.Generation&breaker.LocalGenerationBit == 0 {
		t.Fatalf("Allow with the store down: got %+v, %v; want allowed, degraded, CLOSED, local generation", a, err)
	}
	// Local failures open the local breaker.
	for i := 0; i < 2; i++ {
		r, err := b.Report(ctx, "b", pol, breaker.OutcomeFailure, a.Generation, "")
		if err != nil || !r.Degraded || r.Ignored {
			t.Fatalf("Report %d with the store down: got %+v, %v; want counted, degraded", i, r, err)
		}
	}
	if a, _ := b.Allow(ctx, "b", pol); a.Allowed || a.State != breaker.StateOpen || !a.Degraded {
		t.Fatalf("Allow after local failures: got %+v, want denied by the local breaker, degraded", a)
	}
	if st, err := b.Status(ctx, "b", pol); err != nil || !st.Degraded || st.State != breaker.StateOpen {
		t.Fatalf("Status with the store down: got %+v, %v; want the local OPEN status, degraded", st, err)
	}
	if _, err := b.Reset(ctx, "b", pol, breaker.StateClosed); !errors.Is(err, breaker.ErrStoreUnavailable) {
		t.Fatalf("Reset with the store down: got %v, want ErrStoreUnavailable (no fallback)", err)
	}

	// Store back: used again once the retry interval passed.
	store.down.Store(false)
	if a, _ := b.Allow(ctx, "b", pol); !a.Degraded {
		t.Fatalf("Allow within the retry interval: got %+v, want still degraded", a)
	}
	clock.Advance(time.Second)
	a, err = b.Allow(ctx, "b", pol)
	if err != nil || a.Degraded || a.State != breaker.StateOpen || a.Generation&breaker.LocalGenerationBit != 0 {
		t.Fatalf("Allow after the store is back: got %+v, %v; want the shared OPEN state, not degraded", a, err)
	}
}

func TestBreakerLocalProbeRoutesToLocal(t *testing.T) {
	ctx := context.Background()
	clock, store, b := newFlakyBreaker(t, 0)
	store.down.Store(true)
	for i := 0; i < 2; i++ {
		b.Report(ctx, "b", pol, breaker.OutcomeFailure, 0, "")
	}
	clock.Advance(pol.RecoveryTimeout)
	p, err := b.Allow(ctx, "b", pol)
	if err != nil || !p.Allowed || p.PermitID == "" || !p.Degraded {
		t.Fatalf("local probe: got %+v, %v; want an allowed degraded probe", p, err)
	}
	store.down.Store(false) // the store is back, but the probe belongs to the local breaker
	if err := b.Release(ctx, "b", p.PermitID); err != nil {
		t.Fatalf("Release of a local permit: %v", err)
	}
	p, _ = b.Allow(ctx, "b", pol) // shared breaker: CLOSED
	if p.Degraded || p.State != breaker.StateClosed {
		t.Fatalf("Allow with the store back: got %+v, want the shared CLOSED state", p)
	}
	store.down.Store(true)
	p, _ = b.Allow(ctx, "b", pol)
	r, err := b.Report(ctx, "b", pol, breaker.OutcomeSuccess, p.Generation, p.PermitID)
	if err != nil || r.Ignored || r.State != breaker.StateClosed || !r.Degraded {
		t.Fatalf("local probe success: got %+v, %v; want counted, CLOSED, degraded", r, err)
	}
}

func TestBreakerErrorsWithoutFallback(t *testing.T) {
	ctx := context.Background()
	store := &flakyStore{MemoryStore: breaker.NewMemoryStore()}
	store.down.Store(true)
	b := breaker.New(store, breaker.WithoutLocalFallback())
	if _, err := b.Allow(ctx, "b", pol); !errors.Is(err, breaker.ErrStoreUnavailable) {
		t.Fatalf("Allow without fallback: got %v, want ErrStoreUnavailable", err)
	}
	// Invalid input is an error, never a fallback.
	b = breaker.New(store)
	defer b.Close()
	store.down.Store(false)
	if _, err := b.Allow(ctx, "b", breaker.Settings{FailureThreshold: -1}); !errors.Is(err, breaker.ErrInvalidSettings) {
		t.Fatalf("Allow with bad settings: got %v, want ErrInvalidSettings", err)
	}
	// A cancelled context is the caller's error, not a reason to fall back.
	store.down.Store(true)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.Allow(cctx, "b", pol); err == nil {
		t.Fatalf("Allow with a cancelled context and the store down: got no error, want one")
	}
}

func TestBreakerPassesStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) breaker.Store {
		s := breaker.NewMemoryStore(breaker.WithMemoryClock(now))
		b := breaker.New(s, breaker.WithClock(now))
		t.Cleanup(func() { _ = b.Close(); _ = s.Close() })
		return b
	})
}

func TestStateCache(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	clock := storetest.NewClock(storetest.Epoch)
	store := breaker.NewMemoryStore(breaker.WithMemoryClock(clock.Now))
	defer store.Close()
	watching := make(chan struct{})
	applied := make(chan breaker.Event, 16)
	cache := breaker.NewStateCache(breaker.WithCacheClock(clock.Now), breaker.WithCacheMaxAge(time.Minute),
		breaker.WithCacheHooks(breaker.CacheHooks{
			Watching: func() { close(watching) },
			Event:    func(e breaker.Event) { applied <- e },
		}))

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := cache.Run(ctx, store, ""); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	defer func() { cancel(); wg.Wait() }()

	if _, _, ok := cache.Lookup("b"); ok {
		t.Fatalf("Lookup of an unseen breaker: got ok, want not known")
	}
	a, _ := store.Allow(ctx, "b", pol)
	cache.Observe("b", a.State, a.Generation)
	if st, gen, ok := cache.Lookup("b"); !ok || st != breaker.StateClosed || gen != a.Generation {
		t.Fatalf("Lookup after Observe: got %v %d %v, want CLOSED %d true", st, gen, ok, a.Generation)
	}
	// Once Run's subscription is in place, a reset's event reaches the cache.
	<-watching
	status, err := store.Reset(ctx, "b", pol, breaker.StateOpen)
	if err != nil {
		t.Fatalf("Reset: %v", err)
	}
	gen := status.Generation
	if e := <-applied; e.Name != "b" || e.To != breaker.StateOpen || e.Generation != gen {
		t.Fatalf("event applied: got %v, want b -> OPEN at generation %d", e, gen)
	}
	if st, g, _ := cache.Lookup("b"); st != breaker.StateOpen || g != gen {
		t.Fatalf("Lookup after the OPEN event: got %v %d, want OPEN %d", st, g, gen)
	}
	cache.Observe("b", breaker.StateClosed, 1) // an older answer arriving late
	if st, g, _ := cache.Lookup("b"); st != breaker.StateOpen || g != gen {
		t.Fatalf("Lookup after a stale observation: got %v %d, want OPEN %d", st, g, gen)
	}
	cache.Observe("b", breaker.StateClosed, breaker.LocalGenerationBit|50)
	if st, _, _ := cache.Lookup("b"); st != breaker.StateOpen {
		t.Fatalf("a degraded observation changed the cache: got %v, want OPEN", st)
	}
	clock.Advance(time.Minute + time.Microsecond)
	if _, _, ok := cache.Lookup("b"); ok {
		t.Fatalf("Lookup after the max age: got ok, want not known")
	}
	cache.Observe("b", breaker.StateOpen, gen)
	cache.Apply(breaker.Event{Reason: breaker.ReasonResync})
	if _, _, ok := cache.Lookup("b"); ok {
		t.Fatalf("Lookup after a resync: got ok, want not known")
	}
	if e := <-applied; e.Reason != breaker.ReasonResync {
		t.Fatalf("hooked event: got %v, want the resync marker", e)
	}
}

// countingStore is a MemoryStore that counts its Allow calls.
type countingStore struct {
	*breaker.MemoryStore
	allows atomic.Int64
}

func (c *countingStore) Allow(ctx context.Context, name string, s breaker.Settings) (breaker.Admission, error) {
	c.allows.Add(1)
	return c.MemoryStore.Allow(ctx, name, s)
}

// With a state cache, a breaker known to be CLOSED costs no store call; the
// store's answers keep the cache right.
func TestBreakerWithStateCache(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(storetest.Epoch)
	store := &countingStore{MemoryStore: breaker.NewMemoryStore(breaker.WithMemoryClock(clock.Now))}
	defer store.Close()
	var observed []breaker.State
	cache := breaker.NewStateCache(breaker.WithCacheClock(clock.Now), breaker.WithCacheHooks(breaker.CacheHooks{
		Observed: func(_ string, st breaker.State) { observed = append(observed, st) },
	}))
	b := breaker.New(store, breaker.WithClock(clock.Now), breaker.WithStateCache(cache))
	defer b.Close()

	first, err := b.Allow(ctx, "c", pol)
	if err != nil || !first.Allowed {
		t.Fatalf("Allow: got %+v, %v; want allowed", first, err)
	}
	for range 3 {
		a, err := b.Allow(ctx, "c", pol)
		if err != nil || !a.Allowed || a.State != breaker.StateClosed || a.Generation != first.Generation {
			t.Fatalf("cached Allow: got %+v, %v; want allowed, CLOSED at generation %d", a, err, first.Generation)
		}
	}
	if n := store.allows.Load(); n != 1 {
		t.Fatalf("store Allow calls: got %d, want 1 (CLOSED is cached)", n)
	}
	for range 2 {
		if _, err := b.Report(ctx, "c", pol, breaker.OutcomeFailure, first.Generation, ""); err != nil {
			t.Fatal(err)
		}
	}
	open, err := b.Allow(ctx, "c", pol)
	if err != nil || open.Allowed || open.State != breaker.StateOpen {
		t.Fatalf("Allow after 2 failures: got %+v, %v; want refused by the store, OPEN", open, err)
	}
	if n := store.allows.Load(); n != 2 {
		t.Errorf("store Allow calls: got %d, want 2 (an OPEN breaker asks the store)", n)
	}
	if _, err := b.Reset(ctx, "c", pol, breaker.StateClosed); err != nil {
		t.Fatal(err)
	}
	if st, _, ok := cache.Lookup("c"); !ok || st != breaker.StateClosed {
		t.Errorf("cache after Reset: got %v %v, want CLOSED", st, ok)
	}
	want := []breaker.State{breaker.StateClosed, breaker.StateClosed, breaker.StateOpen, breaker.StateOpen, breaker.StateClosed}
	if fmt.Sprint(observed) != fmt.Sprint(want) {
		t.Errorf("observed: got %v, want %v (Allow, 2 Reports, Allow, Reset)", observed, want)
	}
}
