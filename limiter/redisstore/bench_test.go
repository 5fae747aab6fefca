package redisstore_test

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/topdeck/resilience/internal/redistest"
	"github.com/topdeck/resilience/internal/testkit"
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
	keys := testkit.Keys("key", 256)
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

// BenchmarkHotKey measures one hot key decided by two replicas (two
// Limiters, each with its own Store and client, as two resilienced
// processes) on one Redis, from 64 concurrent callers split between them,
// with every call admitted: lease=off sends one gcra.lua per decision (the
// single-key ceiling is what one Redis core runs of it), lease=on one
// lease.lua per lease of up to max_tokens. It reports decisions/s, Redis
// script calls per decision and Redis CPU per decision (from INFO
// commandstats): 10^9 / redis-ns/op is what one shard could decide.
func BenchmarkHotKey(b *testing.B) {
	srv := redistest.Start(b)
	admin := srv.Client()
	// 10 million per second, far above what the machine does: all admitted.
	lim := limiter.Limit{MaxCalls: 10_000_000, Window: time.Second}
	for _, mode := range []struct {
		name  string
		lease limiter.LeasePolicy
	}{
		{"lease=off", limiter.LeasePolicy{}},
		{"lease=on/max_tokens=100", limiter.LeasePolicy{MaxTokens: 100, TTL: 100 * time.Millisecond}},
		{"lease=on/max_tokens=1000", limiter.LeasePolicy{MaxTokens: 1000, TTL: 100 * time.Millisecond}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			reps := []*limiter.Limiter{
				limiter.New(redisstore.New(srv.Client(), redisstore.WithPrefix(b.Name()))),
				limiter.New(redisstore.New(srv.Client(), redisstore.WithPrefix(b.Name()))),
			}
			ctx := context.Background()
			calls0, usec0 := scriptStats(b, admin)
			var n, degraded atomic.Int64
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				l := reps[n.Add(1)%2]
				req := limiter.Request{Key: "hot", Limit: lim, Cost: 1, Lease: mode.lease}
				for pb.Next() {
					res, err := l.Acquire(ctx, req)
					if err != nil || !res.Allowed {
						b.Errorf("Acquire = %+v, %v; want allowed", res, err)
						return
					}
					if res.Degraded { // Redis slower than the store timeout
						degraded.Add(1)
					}
				}
			})
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "decisions/s")
			calls, usec := scriptStats(b, admin)
			b.ReportMetric(float64(calls-calls0)/float64(b.N), "redis-calls/op")
			b.ReportMetric(float64(usec-usec0)*1000/float64(b.N), "redis-ns/op")
			b.ReportMetric(float64(degraded.Load())/float64(b.N), "degraded/op")
		})
	}
}

// scriptStats returns how many EVALSHA and EVAL calls Redis has run and the
// microseconds of Redis CPU they took (INFO commandstats).
func scriptStats(b *testing.B, c *redis.Client) (calls, usec int64) {
	b.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		for _, cmd := range []string{"cmdstat_evalsha:", "cmdstat_eval:"} {
			rest, ok := strings.CutPrefix(strings.TrimSpace(line), cmd)
			if !ok {
				continue
			}
			for _, kv := range strings.Split(rest, ",") {
				k, v, _ := strings.Cut(kv, "=")
				n, _ := strconv.ParseInt(v, 10, 64)
				switch k {
				case "calls":
					calls += n
				case "usec":
					usec += n
				}
			}
		}
	}
	return calls, usec
}
