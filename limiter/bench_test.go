package limiter_test

import (
	"context"
	"testing"
	"time"

	"github.com/topdeck/resilience/internal/testkit"
	"github.com/topdeck/resilience/limiter"
)

// BenchmarkMemoryStoreTake measures one GCRA decision in the memory store,
// alternately admitted and denied.
func BenchmarkMemoryStoreTake(b *testing.B) {
	s := limiter.NewMemoryStore()
	lim := limiter.Limit{MaxCalls: 3, Window: time.Second, Burst: 100}
	ctx := context.Background()
	for b.Loop() {
		if _, err := s.Take(ctx, "k", lim, 1, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMemoryStoreTakeParallel spreads decisions over 1024 keys from
// every P.
func BenchmarkMemoryStoreTakeParallel(b *testing.B) {
	s := limiter.NewMemoryStore()
	lim := limiter.Limit{MaxCalls: 1000, Window: time.Second}
	keys := testkit.Keys("key", 1024)
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := s.Take(ctx, keys[i%len(keys)], lim, 1, 0); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkLimiterAcquire measures Acquire over a memory store: validation,
// the deny cache and the decision. Most calls are denied from the cache.
func BenchmarkLimiterAcquire(b *testing.B) {
	benchAcquire(b, limiter.Limit{MaxCalls: 10, Window: time.Second})
}

// BenchmarkLimiterAcquireAdmitted measures Acquire when every call is
// admitted by the store.
func BenchmarkLimiterAcquireAdmitted(b *testing.B) {
	benchAcquire(b, limiter.Limit{MaxCalls: 1_000_000_000, Window: time.Millisecond})
}

// benchAcquire measures Acquire of one call on key "k" under lim, over a
// Limiter on a memory store.
func benchAcquire(b *testing.B, lim limiter.Limit) {
	l := limiter.New(limiter.NewMemoryStore())
	req := limiter.Request{Key: "k", Limit: lim, Cost: 1}
	ctx := context.Background()
	for b.Loop() {
		if _, err := l.Acquire(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
