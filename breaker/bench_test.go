package breaker_test

import (
	"testing"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/breaker/storetest"
)

func BenchmarkMemory(b *testing.B) {
	storetest.Benchmark(b, func(*testing.B) breaker.Store { return breaker.NewMemoryStore() })
}
