package server

import (
	"context"
	"log/slog"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/topdeck/resilience/config"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/internal/redistest"
)

// BenchmarkCacheGetMemory puts a cache hit served from the replica's memory
// layer (the Backends run, so the Cache follows Redis's invalidations) next
// to the service's health check and a Get that reads Redis (fresh), on TCP
// loopback and one private redis-server, one caller at a time (Serial) and
// 64 callers on one connection (Parallel).
//
// Run: go test -run '^$' -bench CacheGetMemory -benchtime 2s -count 3 ./server/
func BenchmarkCacheGetMemory(b *testing.B) {
	ctx := context.Background()
	rdb := redistest.Start(b).Client()
	cfg := config.Default()
	backends := runBackends(b, cfg, redisStores(cfg, rdb))
	conn := serveBench(b, cfg, backends, slog.LevelWarn)
	cc := resiliencev1.NewCacheServiceClient(conn)
	hc := healthpb.NewHealthClient(conn)
	if _, err := cc.Set(ctx, &resiliencev1.SetRequest{Key: "k", Value: make([]byte, 100)}); err != nil {
		b.Fatal(err)
	}
	for !backends.Cache.Following() {
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil { // a pause that yields
			b.Fatal(err)
		}
	}
	get := func(req *resiliencev1.GetRequest) func() error {
		return func() error {
			r, err := cc.Get(ctx, req)
			if err == nil && (!r.GetFound() || r.GetDegraded()) {
				b.Fatal(r)
			}
			return err
		}
	}
	cases := []struct {
		name string
		call func() error
	}{
		{"ServiceHealth", func() error { _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); return err }},
		{"GetFromMemory", get(&resiliencev1.GetRequest{Key: "k"})},
		{"GetFresh", get(&resiliencev1.GetRequest{Key: "k", Fresh: true})},
	}
	for _, c := range cases {
		b.Run(c.name+"/Serial", func(b *testing.B) {
			for b.Loop() {
				if err := c.call(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/Parallel64", func(b *testing.B) {
			b.SetParallelism(32) // 64 goroutines on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := c.call(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
