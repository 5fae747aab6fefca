package breaker_test

import (
	"testing"
	"time"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/breaker/storetest"
)

func TestMemoryStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) breaker.Store {
		s := breaker.NewMemoryStore(breaker.WithMemoryClock(now))
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}
