package cache_test

import (
	"testing"

	"github.com/topdeck/resilience/cache"
	"github.com/topdeck/resilience/cache/storetest"
)

// BenchmarkMemory runs the shared store benchmarks on the memory store.
func BenchmarkMemory(b *testing.B) {
	storetest.Benchmark(b, func(b *testing.B) cache.Store {
		s, err := cache.NewMemoryStore()
		if err != nil {
			b.Fatal(err)
		}
		return s
	})
}
