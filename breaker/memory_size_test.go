package breaker_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/breaker/storetest"
)

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("tenant-%06d/upstream-%06d", i, i) // 29 bytes
	}
	return out
}

// The memory a replica spends per breaker name, measured on 200,000 names
// (docs/scaling.md, "Breaker memory per name"). The names themselves are
// allocated before the measurement: add len(name) rounded up to 8 or 16
// bytes for a name that only the structure holds. The bounds are loose;
// the figures are logged.
func TestMemoryPerBreakerName(t *testing.T) {
	const n = 200_000
	ns := names(n)

	cache := breaker.NewStateCache(breaker.WithCacheMaxEntries(n))
	perEntry := storetest.BytesPerItem(n, func(i int) { cache.Observe(ns[i], breaker.StateClosed, 1_900_000_000_000_000) })
	t.Logf("StateCache: %.0f bytes per breaker (%d entries)", perEntry, cache.Len())
	if cache.Len() != n || perEntry > 200 {
		t.Errorf("StateCache: %d entries at %.0f bytes each, want %d at most 200 bytes each", cache.Len(), perEntry, n)
	}

	capped := breaker.NewStateCache() // DefaultCacheMaxEntries
	for i := range n {
		capped.Observe(ns[i], breaker.StateClosed, 1_900_000_000_000_000)
	}
	if capped.Len() != breaker.DefaultCacheMaxEntries {
		t.Errorf("StateCache with the default bound after %d names: got %d entries, want %d", n, capped.Len(), breaker.DefaultCacheMaxEntries)
	}

	ctx := context.Background()
	store := breaker.NewMemoryStore()
	defer store.Close()
	perMachine := storetest.BytesPerItem(n, func(i int) {
		if _, err := store.Allow(ctx, ns[i], breaker.Settings{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("MemoryStore: %.0f bytes per breaker in use (CLOSED, %d breakers)", perMachine, n)
	if perMachine > 400 {
		t.Errorf("MemoryStore: %.0f bytes per breaker, want at most 400", perMachine)
	}
	runtime.KeepAlive(ns)
	runtime.KeepAlive(cache)
	runtime.KeepAlive(capped)
}
