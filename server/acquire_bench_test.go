package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/topdeck/resilience/config"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/internal/redistest"
)

// BenchmarkAcquire puts Acquire through the whole server (interceptors,
// metrics, access log at the default info level, admission, the store) on
// TCP loopback, 64 callers on one connection, next to this server's health
// check, the floor:
//
//   - Health: grpc.health.v1 Check;
//   - Allowed: an inline limit far above the load, one key per caller;
//   - Denied: a drained bucket;
//   - ClosedBreaker: a breaker-only Acquire on a CLOSED breaker.
//
// each on the embedded store and on a private redis-server. Allocations per
// call are the figure that does not move with the machine's load.
//
// Run: go test -run '^$' -bench 'Acquire$' -benchtime 2s -count 3 -benchmem ./server/
func BenchmarkAcquire(b *testing.B) {
	for _, storeKind := range []string{"memory", "redis"} {
		b.Run(storeKind, func(b *testing.B) {
			cfg := config.Default()
			var st Stores
			if storeKind == "redis" {
				st = redisStores(cfg, redistest.Start(b).Client())
			} else {
				st = memoryStores(b, cfg, nil)
			}
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			backends := runBackends(b, cfg, st, WithBackendMetrics(m))
			conn := serveBench(b, cfg, backends, slog.LevelInfo)
			rc := resiliencev1.NewResilienceServiceClient(conn)
			hc := healthpb.NewHealthClient(conn)
			ctx := context.Background()
			wide := &resiliencev1.RateLimit{MaxCalls: 1_000_000_000, TimeWindow: durationpb.New(time.Second)}
			tight := &resiliencev1.RateLimit{MaxCalls: 1, TimeWindow: durationpb.New(time.Hour)}
			if _, err := rc.Acquire(ctx, &resiliencev1.AcquireRequest{Key: "drained", Limit: tight}); err != nil {
				b.Fatal(err)
			}
			var seq atomic.Int64
			cases := []struct {
				name string
				call func(g int64) error
			}{
				{"Health", func(int64) error {
					_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
					return err
				}},
				{"Allowed", func(g int64) error {
					r, err := rc.Acquire(ctx, &resiliencev1.AcquireRequest{Key: fmt.Sprint("k", g), Limit: wide})
					if err == nil && !r.GetAllowed() {
						return fmt.Errorf("denied: %v", r)
					}
					return err
				}},
				{"Denied", func(int64) error {
					r, err := rc.Acquire(ctx, &resiliencev1.AcquireRequest{Key: "drained", Limit: tight})
					if err == nil && r.GetAllowed() {
						return fmt.Errorf("allowed: %v", r)
					}
					return err
				}},
				{"ClosedBreaker", func(int64) error {
					r, err := rc.Acquire(ctx, &resiliencev1.AcquireRequest{Breaker: "closed"})
					if err == nil && !r.GetAllowed() {
						return fmt.Errorf("refused: %v", r)
					}
					return err
				}},
			}
			for _, c := range cases {
				b.Run(c.name, func(b *testing.B) {
					b.SetParallelism(32) // 64 callers on 2 cores
					b.ReportAllocs()
					b.RunParallel(func(pb *testing.PB) {
						g := seq.Add(1)
						for pb.Next() {
							if err := c.call(g); err != nil {
								b.Error(err)
								return
							}
						}
					})
				})
			}
		})
	}
}
