package limiter_test

import (
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
