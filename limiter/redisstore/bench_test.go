package redisstore_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/topdeck/resilience/internal/redistest"
	"github.com/topdeck/resilience/limiter"
	"github.com/topdeck/resilience/limiter/redisstore"
)

// batchModes are the sub-benchmarks: decisions batched into pipelines
// (the default) or one round trip each.
var batchModes = []struct {
	name string
	on   bool
}{{"batching=on", true}, {"batching=off", false}}

// BenchmarkTakeParallel measures Take from 64 concurrent callers (parallelism
// 64/GOMAXPROCS per P) over 256 keys, one script per decision.
func BenchmarkTakeParallel(b *testing.B) {
	srv := redistest.Start(b)
	client := srv.Client()
	lim := limiter.Limit{MaxCalls: 1000, Window: time.Second}
	keys := make([]string, 256)
	for i := range keys {
		keys[i] = fmt.Sprint("key", i)
	}
	ctx := context.Background()
	for _, mode := range batchModes {
		b.Run(mode.name, func(b *testing.B) {
			s := redisstore.New(client, redisstore.WithBatching(mode.on))
			var n atomic.Int64
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					if _, err := s.Take(ctx, keys[i%int64(len(keys))], lim, 1, 0); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkTake measures one Take from one caller: a round trip plus the
// script (batching adds only its bookkeeping for a lone caller).
func BenchmarkTake(b *testing.B) {
	srv := redistest.Start(b)
	client := srv.Client()
	lim := limiter.Limit{MaxCalls: 1000, Window: time.Second}
	ctx := context.Background()
	for _, mode := range batchModes {
		b.Run(mode.name, func(b *testing.B) {
			s := redisstore.New(client, redisstore.WithBatching(mode.on))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Take(ctx, "k", lim, 1, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
