package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/topdeck/resilience/cache"
	"github.com/topdeck/resilience/cache/redisstore"
	"github.com/topdeck/resilience/internal/redistest"
)

// BenchmarkRedis compares the cache paths with plain go-redis commands on
// the same private server.
func BenchmarkRedis(b *testing.B) {
	ctx := context.Background()
	client := redistest.Start(b).Client()
	s := redisstore.New(client)
	c, err := cache.New(s)
	if err != nil {
		b.Fatal(err)
	}
	value := make([]byte, 256)
	if err := s.Set(ctx, "k", value, time.Hour); err != nil {
		b.Fatal(err)
	}
	if err := client.Set(ctx, "plain", value, time.Hour).Err(); err != nil {
		b.Fatal(err)
	}

	b.Run("GoRedisGET", func(b *testing.B) {
		for b.Loop() {
			if err := client.Get(ctx, "plain").Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("StoreGetHit", func(b *testing.B) {
		for b.Loop() {
			if _, ok, err := s.Get(ctx, "k"); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("CacheGetHit", func(b *testing.B) {
		for b.Loop() {
			if r, err := c.Get(ctx, "k"); !r.Found || err != nil {
				b.Fatal(r, err)
			}
		}
	})
	b.Run("CacheGetHitParallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if r, err := c.Get(ctx, "k"); !r.Found || err != nil {
					b.Error(r, err)
					return
				}
			}
		})
	})
	b.Run("GoRedisSET", func(b *testing.B) {
		for b.Loop() {
			if err := client.Set(ctx, "plain", value, time.Hour).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CacheSet", func(b *testing.B) {
		for b.Loop() {
			if r, err := c.Set(ctx, "k", value, time.Hour); !r.Stored || err != nil {
				b.Fatal(r, err)
			}
		}
	})
}
