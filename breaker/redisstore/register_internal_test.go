package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/topdeck/resilience/breaker"
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
	count := func() int {
		n := 0
		s.seen.Range(func(any, any) bool { n++; return true })
		return n
	}

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
	if got := count(); got != 1 {
		t.Fatalf("names remembered after a refresh period without a and b: got %d, want 1 (c)", got)
	}
}
