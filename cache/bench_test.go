package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/topdeck/resilience/cache"
)

func benchCache(b *testing.B) (*cache.Cache, *cache.MemoryStore) {
	b.Helper()
	s, err := cache.NewMemoryStore()
	if err != nil {
		b.Fatal(err)
	}
	c, err := cache.New(s)
	if err != nil {
		b.Fatal(err)
	}
	return c, s
}

func BenchmarkMemory(b *testing.B) {
	ctx := context.Background()
	value := make([]byte, 256)
	b.Run("StoreGetHit", func(b *testing.B) {
		_, s := benchCache(b)
		_ = s.Set(ctx, "k", value, time.Hour)
		for b.Loop() {
			if _, ok, err := s.Get(ctx, "k"); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("CacheGetHit", func(b *testing.B) {
		c, _ := benchCache(b)
		_, _ = c.Set(ctx, "k", value, time.Hour)
		for b.Loop() {
			if r, err := c.Get(ctx, "k"); !r.Found || err != nil {
				b.Fatal(r, err)
			}
		}
	})
	b.Run("CacheGetHitParallel", func(b *testing.B) {
		c, _ := benchCache(b)
		_, _ = c.Set(ctx, "k", value, time.Hour)
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
		c, _ := benchCache(b)
		for b.Loop() {
			if r, err := c.Set(ctx, "k", value, time.Hour); !r.Stored || err != nil {
				b.Fatal(r, err)
			}
		}
	})
}
