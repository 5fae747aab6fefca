package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/topdeck/resilience/cache"
	"github.com/topdeck/resilience/cache/redisstore"
	"github.com/topdeck/resilience/cache/storetest"
	"github.com/topdeck/resilience/internal/redistest"
)

// BenchmarkRedis compares the cache paths (the shared store benchmarks)
// with plain go-redis commands on the same private server.
func BenchmarkRedis(b *testing.B) {
	ctx := context.Background()
	client := redistest.Start(b).Client()
	value := make([]byte, 256)
	redistest.BenchmarkGET(b, "GoRedisGET", client, value)
	b.Run("GoRedisSET", func(b *testing.B) {
		for b.Loop() {
			if err := client.Set(ctx, "plain", value, time.Hour).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	storetest.Benchmark(b, func(b *testing.B) cache.Store { return redisstore.New(client) })
}
