package limiter_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/topdeck/resilience/limiter"
	"github.com/topdeck/resilience/limiter/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestMemoryStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) limiter.Store {
		return limiter.NewMemoryStore(limiter.WithMemoryClock(now))
	})
}

func TestMemoryStoreLease(t *testing.T) {
	storetest.RunLease(t, func(t *testing.T, now func() time.Time) limiter.Store {
		return limiter.NewMemoryStore(limiter.WithMemoryClock(now))
	})
}

// TestMemoryStoreBoundedByBusyKeys checks that a store whose every call is
// on a new key still drops the buckets that are full again: it holds at
// most about twice the buckets busy at once.
func TestMemoryStoreBoundedByBusyKeys(t *testing.T) {
	clock := storetest.NewClock(time.Unix(1_700_000_000, 0))
	s := limiter.NewMemoryStore(limiter.WithMemoryClock(clock.Now))
	lim := limiter.Limit{MaxCalls: 100, Window: time.Second} // one call leaves 10ms of debt
	for i := range 10000 {
		if _, err := s.Take(context.Background(), fmt.Sprint("k", i), lim, 1, 0); err != nil {
			t.Fatal(err)
		}
		clock.Advance(100 * time.Microsecond) // 100 busy buckets at once
	}
	if n := s.Len(); n > 2*100+64 {
		t.Errorf("Len = %d after 10000 keys with 100 busy at once, want at most about 200", n)
	}
}

func TestMemoryStoreMultiConformance(t *testing.T) {
	storetest.RunMulti(t, func(t *testing.T, now func() time.Time) limiter.Store {
		return limiter.NewMemoryStore(limiter.WithMemoryClock(now))
	})
}
