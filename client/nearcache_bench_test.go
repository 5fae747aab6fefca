package client_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/topdeck/resilience/client"
	"github.com/topdeck/resilience/internal/redisconn"
	"github.com/topdeck/resilience/internal/redistest"
)

// BenchmarkNearCacheGet puts a hit of the Go SDK's near cache next to a
// direct go-redis GET of the same 100 bytes (the yardstick, on a
// private redis-server over loopback) and a Get through the service (near
// cache off; the service on that Redis, over bufconn).
//
// Run: go test -run '^$' -bench NearCacheGet -benchtime 2s -count 3 ./client/
func BenchmarkNearCacheGet(b *testing.B) {
	ctx := context.Background()
	rs := redistest.Start(b)
	rdb, _, err := redisconn.Open(rs.URL(), redisconn.Timeouts{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rdb.Close() })
	value := make([]byte, 100)
	redistest.BenchmarkGET(b, "RedisGET", rdb, value)

	s := mustService(b, "", rdb)
	remote := client.New(s.conn, client.WithoutNearCache()).Cache()
	if err := remote.Set(ctx, "k", value, time.Hour); err != nil {
		b.Fatal(err)
	}
	b.Run("ServiceGet", func(b *testing.B) {
		for b.Loop() {
			if it, err := remote.Get(ctx, "k"); err != nil || !it.Found {
				b.Fatal(it, err)
			}
		}
	})

	near := client.New(s.conn).Cache()
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = near.Run(rctx) }()
	b.Cleanup(func() { cancel(); wg.Wait() })
	for !near.NearCacheLive() {
		time.Sleep(time.Millisecond)
	}
	b.Run("NearHit", func(b *testing.B) {
		for b.Loop() {
			if it, err := near.Get(ctx, "k"); err != nil || !it.Found {
				b.Fatal(it, err)
			}
		}
	})
	b.Run("NearHitParallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if it, err := near.Get(ctx, "k"); err != nil || !it.Found {
					b.Error(it, err)
					return
				}
			}
		})
	})
}
