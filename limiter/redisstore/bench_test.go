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

// BenchmarkTakeParallel measures Take from 64 concurrent callers (parallelism
// 64/GOMAXPROCS per P) over 256 keys, one script per decision.
func BenchmarkTakeParallel(b *testing.B) {
	srv := redistest.Start(b)
	client := srv.Client()
	s := redisstore.New(client)
	lim := limiter.Limit{MaxCalls: 1000, Window: time.Second}
	keys := make([]string, 256)
	for i := range keys {
		keys[i] = fmt.Sprint("key", i)
	}
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(max(1, 64/runtimeGOMAXPROCS()))
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
}

// BenchmarkTake measures one Take from one caller: a round trip plus the
// script.
func BenchmarkTake(b *testing.B) {
	srv := redistest.Start(b)
	s := redisstore.New(srv.Client())
	lim := limiter.Limit{MaxCalls: 1000, Window: time.Second}
	ctx := context.Background()
	for b.Loop() {
		if _, err := s.Take(ctx, "k", lim, 1, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func runtimeGOMAXPROCS() int { return runtime.GOMAXPROCS(0) }
