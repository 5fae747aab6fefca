package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/topdeck/resilience/cache"
)

// NewBenchStoreFunc builds the store one benchmark runs against.
type NewBenchStoreFunc func(b *testing.B) cache.Store

// Benchmark runs the shared benchmarks of a cache.Store, the same for every
// store so that their figures compare, each on a store of its own and a
// 256-byte value under one key: StoreGetHit (the store alone), CacheGetHit
// and CacheGetHitParallel (a Cache over the store), and CacheSet.
func Benchmark(b *testing.B, newStore NewBenchStoreFunc) {
	ctx := context.Background()
	value := make([]byte, 256)
	// stored returns a store holding value under "k" and a Cache over it.
	stored := func(b *testing.B) (cache.Store, *cache.Cache) {
		b.Helper()
		s := newStore(b)
		c, err := cache.New(s)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Set(ctx, "k", value, time.Hour); err != nil {
			b.Fatal(err)
		}
		return s, c
	}
	b.Run("StoreGetHit", func(b *testing.B) {
		s, _ := stored(b)
		for b.Loop() {
			if _, ok, err := s.Get(ctx, "k"); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("CacheGetHit", func(b *testing.B) {
		_, c := stored(b)
		for b.Loop() {
			if r, err := c.Get(ctx, "k"); !r.Found || err != nil {
				b.Fatal(r, err)
			}
		}
	})
	b.Run("CacheGetHitParallel", func(b *testing.B) {
		_, c := stored(b)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if r, err := c.Get(ctx, "k"); !r.Found || err != nil {
					b.Error(r, err)
					return
				}
			}
		})
	})
	b.Run("CacheSet", func(b *testing.B) {
		_, c := stored(b)
		for b.Loop() {
			if r, err := c.Set(ctx, "k", value, time.Hour); !r.Stored || err != nil {
				b.Fatal(r, err)
			}
		}
	})
}
