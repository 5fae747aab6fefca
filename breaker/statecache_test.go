package breaker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/breaker/storetest"
)

func TestStateCacheIsBounded(t *testing.T) {
	clock := storetest.NewClock(storetest.Epoch)
	c := breaker.NewStateCache(breaker.WithCacheClock(clock.Now), breaker.WithCacheMaxEntries(3),
		breaker.WithCacheMaxAge(time.Second), breaker.WithCacheIdleTTL(time.Minute))
	for i := range 5 {
		c.Observe(fmt.Sprintf("b%d", i), breaker.StateClosed, 10)
	}
	if n := c.Len(); n != 3 {
		t.Fatalf("Len after 5 names with at most 3: got %d, want 3", n)
	}
	for i, want := range []bool{false, false, true, true, true} {
		if _, _, ok := c.Lookup(fmt.Sprintf("b%d", i)); ok != want {
			t.Fatalf("Lookup(b%d): got ok %v, want %v (the least recently refreshed go first)", i, ok, want)
		}
	}
	c.Observe("b2", breaker.StateOpen, 11) // refreshed: now the newest
	c.Observe("b5", breaker.StateClosed, 10)
	if _, _, ok := c.Lookup("b3"); ok {
		t.Fatalf("Lookup(b3): still known, want forgotten (b2 was refreshed after it)")
	}
	if st, _, ok := c.Lookup("b2"); !ok || st != breaker.StateOpen {
		t.Fatalf("Lookup(b2): got %v %v, want OPEN", st, ok)
	}
	// Idle entries go once anything is observed after the idle TTL.
	clock.Advance(time.Minute + time.Nanosecond)
	c.Observe("fresh", breaker.StateClosed, 10)
	if n := c.Len(); n != 1 {
		t.Fatalf("Len after the idle TTL: got %d, want 1 (only the fresh entry)", n)
	}
	c.Forget("fresh")
	if n := c.Len(); n != 0 {
		t.Fatalf("Len after Forget: got %d, want 0", n)
	}
	c.Observe("none", breaker.StateClosed, 0) // no state: not remembered
	if n := c.Len(); n != 0 {
		t.Fatalf("Len after observing generation 0: got %d, want 0", n)
	}
}

// Resync after a data loss: the store here is a new, empty MemoryStore, as
// a Redis that restarted empty (breaker/redisstore tests it on Redis).
func TestStateCacheResync(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(storetest.Epoch)
	before := breaker.NewMemoryStore(breaker.WithMemoryClock(clock.Now))
	defer before.Close()
	c := breaker.NewStateCache(breaker.WithCacheClock(clock.Now))
	open, _ := before.Reset(ctx, "open", pol, breaker.StateOpen)
	closed, _ := before.Allow(ctx, "closed", pol)
	again, _ := before.Reset(ctx, "again", pol, breaker.StateOpen)
	c.Observe("open", open.State, open.Generation)
	c.Observe("closed", closed.State, closed.Generation)
	c.Observe("again", again.State, again.Generation)

	clock.Advance(time.Second)
	after := breaker.NewMemoryStore(breaker.WithMemoryClock(clock.Now))
	defer after.Close()
	watch, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := after.Watch(watch, "")
	if err != nil {
		t.Fatal(err)
	}
	reopened, _ := after.Reset(ctx, "again", pol, breaker.StateOpen)
	storetest.NextEvent(t, ch, 5*time.Second) // the reset's own event

	events, err := c.Resync(ctx, after)
	if err != nil {
		t.Fatalf("Resync: %v", err)
	}
	want := map[string]breaker.Event{
		"open":  {Name: "open", From: breaker.StateOpen, To: breaker.StateClosed, Generation: 0, Reason: breaker.ReasonDataLoss, At: clock.Now()},
		"again": {Name: "again", From: breaker.StateOpen, To: breaker.StateOpen, Generation: reopened.Generation, Reason: breaker.ReasonDataLoss, At: clock.Now()},
	}
	if len(events) != len(want) {
		t.Fatalf("Resync events: got %v, want %d (open and again)", events, len(want))
	}
	for _, e := range events {
		storetest.WantEvent(t, e, want[e.Name])
		// announced to the store's watchers
		storetest.WantEvent(t, storetest.NextEvent(t, ch, 5*time.Second), want[e.Name])
	}
	for _, name := range []string{"open", "closed"} {
		if st, gen, ok := c.Lookup(name); ok {
			t.Fatalf("Lookup(%s) after Resync: got %v %d, want forgotten", name, st, gen)
		}
	}
	if st, gen, ok := c.Lookup("again"); !ok || st != breaker.StateOpen || gen != reopened.Generation {
		t.Fatalf("Lookup(again) after Resync: got %v %d %v, want OPEN %d", st, gen, ok, reopened.Generation)
	}
	// Nothing changed since: a second Resync finds nothing.
	if events, err := c.Resync(ctx, after); err != nil || len(events) != 0 {
		t.Fatalf("second Resync: got %v, %v; want no events", events, err)
	}
}
