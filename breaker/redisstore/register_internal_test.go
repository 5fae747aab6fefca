package redisstore

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/breaker/storetest"
	"github.com/topdeck/resilience/internal/clocktest"
	"github.com/topdeck/resilience/internal/redistest"
)

// The names a Store remembers having registered are swept once per refresh
// period, so they stay bounded by the names in use.
func TestRegisteredNamesAreSwept(t *testing.T) {
	ctx := context.Background()
	clock := clocktest.New(time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC))
	s := New(redistest.Start(t).Client(), WithIdleTTL(4*time.Minute), WithClockForTesting(clock.Now))
	t.Cleanup(func() { _ = s.Close() })
	st := breaker.Settings{FailureThreshold: 2}
	count := s.seen.len

	for _, n := range []string{"a", "b"} {
		if _, err := s.Allow(ctx, n, st); err != nil {
			t.Fatal(err)
		}
	}
	if got := count(); got != 2 {
		t.Fatalf("names remembered: got %d, want 2", got)
	}
	clock.Advance(s.refreshEvery() + time.Second)
	if _, err := s.Allow(ctx, "c", st); err != nil {
		t.Fatal(err)
	}
	if got := count(); got > 3 {
		t.Fatalf("names remembered after a refresh period: got %d, want at most 3", got)
	}
	clock.Advance(s.refreshEvery() + time.Second)
	if _, err := s.Allow(ctx, "d", st); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != 2 {
		t.Fatalf("names remembered two refresh periods after a and b were last used: got %d, want 2 (c, d)", got)
	}
}

// However many names are used within a refresh period, the Store remembers
// at most its maximum; a name it forgot is registered again when used.
func TestRegisteredNamesAreBounded(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	c := srv.Client()
	s := New(c, WithPrefix("bound:"), WithMaxRegisteredNames(10))
	t.Cleanup(func() { _ = s.Close() })
	for i := range 100 {
		if _, err := s.Allow(ctx, fmt.Sprintf("n%03d", i), breaker.Settings{}); err != nil {
			t.Fatal(err)
		}
		if got := s.seen.len(); got > 10 {
			t.Fatalf("names remembered after %d names: got %d, want at most 10", i+1, got)
		}
	}
	if n := c.ZCard(ctx, "bound:breakers").Val(); n != 100 {
		t.Fatalf("registry: got %d names, want all 100", n)
	}
	// n000 was forgotten: used again, it is registered again (the registry
	// entry was removed here, as Prune would).
	c.ZRem(ctx, "bound:breakers", "n000")
	if _, err := s.Allow(ctx, "n000", breaker.Settings{}); err != nil {
		t.Fatal(err)
	}
	if c.ZScore(ctx, "bound:breakers", "n000").Err() != nil {
		t.Fatalf("a forgotten name used again: not in the registry, want it registered again")
	}
}

// The registered set costs about 20 bytes per name, whatever the name.
func TestRegisteredNamesMemory(t *testing.T) {
	const n = 200_000
	r := newRegistered(2 * n)
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("tenant-%06d/upstream/some-long-api-name-%06d", i, i)
	}
	perName := storetest.BytesPerItem(n, func(i int) { r.add(names[i], 1, int64(time.Hour)) })
	runtime.KeepAlive(names)
	t.Logf("registered set: %.1f bytes per name (%d names)", perName, r.len())
	if perName > 64 {
		t.Fatalf("registered set: %.1f bytes per name, want at most 64", perName)
	}
}
