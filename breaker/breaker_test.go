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

var pol = breaker.Settings{FailureThreshold: 2, RecoveryTimeout: 10 * time.Second, ProbeTimeout: time.Second}

func TestBreakerFallsBackWhenStoreIsDown(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(storetest.Epoch)
	store := &flakyStore{MemoryStore: breaker.NewMemoryStore(breaker.WithMemoryClock(clock.Now))}
	b := breaker.New(store, breaker.WithClock(clock.Now), breaker.WithStoreRetryInterval(time.Second))
	defer b.Close()

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
	clock := storetest.NewClock(storetest.Epoch)
	store := &flakyStore{MemoryStore: breaker.NewMemoryStore(breaker.WithMemoryClock(clock.Now))}
	b := breaker.New(store, breaker.WithClock(clock.Now), breaker.WithStoreRetryInterval(0))
	defer b.Close()
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
	cache := breaker.NewStateCache(breaker.WithCacheClock(clock.Now), breaker.WithCacheMaxAge(time.Minute))

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
	// Run subscribes asynchronously: reset until the cache sees an event, and
	// then until it has applied the last reset's event, so that no event is
	// still in flight (a late one would refresh the entry's age below).
	deadline := time.Now().Add(5 * time.Second)
	var gen uint64
	for {
		if gen == 0 {
			if _, err := store.Reset(ctx, "b", pol, breaker.StateOpen); err != nil {
				t.Fatalf("Reset: %v", err)
			}
		}
		if st, g, _ := cache.Lookup("b"); st == breaker.StateOpen {
			if gen == 0 {
				status, err := store.Status(ctx, "b", pol)
				if err != nil {
					t.Fatalf("Status: %v", err)
				}
				gen = status.Generation
			}
			if g == gen {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("cache never saw the last OPEN event (want generation %d)", gen)
		}
		time.Sleep(10 * time.Millisecond)
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
}
