package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/breaker/redisstore"
	"github.com/topdeck/resilience/breaker/storetest"
	"github.com/topdeck/resilience/internal/redistest"
)

func TestBreakerFallsBackWhileRedisIsDown(t *testing.T) {
	srv := redistest.Start(t)
	store := newStore(t, srv)
	b := breaker.New(store, breaker.WithStoreRetryInterval(0))
	defer b.Close()
	ctx := context.Background()

	before, err := b.Reset(ctx, "b", settings, breaker.StateOpen)
	if err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if a, err := b.Allow(ctx, "b", settings); err != nil || a.Allowed || a.Degraded {
		t.Fatalf("Allow with Redis up: got %+v, %v; want the shared OPEN state", a, err)
	}

	srv.Kill()
	a, err := b.Allow(ctx, "b", settings)
	if err != nil || !a.Degraded || !a.Allowed || a.State != breaker.StateClosed {
		t.Fatalf("Allow with Redis down: got %+v, %v; want allowed by the local breaker, degraded (never OPEN because Redis is down)", a, err)
	}
	if r, err := b.Report(ctx, "b", settings, breaker.OutcomeFailure, a.Generation, a.PermitID); err != nil || !r.Degraded {
		t.Fatalf("Report with Redis down: got %+v, %v; want degraded", r, err)
	}

	srv.Restart() // Redis lost its data: the shared breaker is CLOSED again
	var got breaker.Admission
	for i := 0; i < 50; i++ {
		if got, err = b.Allow(ctx, "b", settings); err == nil && !got.Degraded {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || got.Degraded || got.State != breaker.StateClosed || got.Generation <= before.Generation {
		t.Fatalf("Allow after Redis is back: got %+v, %v; want the shared state (CLOSED at a generation above %d, never one reused), not degraded", got, err, before.Generation)
	}
}

func BenchmarkRedis(b *testing.B) {
	srv := redistest.Start(b)
	storetest.Benchmark(b, func(b *testing.B) breaker.Store {
		return redisstore.New(srv.Client(), redisstore.WithPrefix(uniquePrefix()))
	})
}

// After FLUSHALL, StateCache.Resync (through a Breaker, as the server calls
// it) finds the breakers it knew OPEN that are no longer, tells the
// watchers, and forgets what it can no longer trust.
func TestResyncAfterFlushAll(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv)
	b := breaker.New(s)
	defer b.Close()
	c := srv.Client()
	cache := breaker.NewStateCache()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	open, err := b.Reset(ctx, "open", settings, breaker.StateOpen)
	if err != nil {
		t.Fatal(err)
	}
	closed, err := b.Allow(ctx, "closed", settings)
	if err != nil {
		t.Fatal(err)
	}
	cache.Observe("open", open.State, open.Generation)
	cache.Observe("closed", closed.State, closed.Generation)
	ch, err := b.Watch(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	events, err := cache.Resync(ctx, b)
	if err != nil {
		t.Fatalf("Resync: %v", err)
	}
	want := breaker.Event{Name: "open", From: breaker.StateOpen, To: breaker.StateClosed, Generation: 0, Reason: breaker.ReasonDataLoss}
	if len(events) != 1 {
		t.Fatalf("Resync events: got %v, want one for the OPEN breaker", events)
	}
	storetest.WantEvent(t, events[0], want)
	storetest.WantEvent(t, storetest.NextEvent(t, ch, 5*time.Second), want)
	if cache.Len() != 0 {
		t.Fatalf("cache after Resync: %d entries, want none (no breaker has state)", cache.Len())
	}
	a, err := b.Allow(ctx, "open", settings)
	if err != nil || !a.Allowed || a.Generation <= open.Generation {
		t.Fatalf("Allow after the loss: got %+v, %v; want CLOSED at a generation above %d", a, err, open.Generation)
	}
}
