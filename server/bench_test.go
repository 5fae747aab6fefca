package server

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/redis/go-redis/v9"

	breakerredis "github.com/topdeck/resilience/breaker/redisstore"
	cacheredis "github.com/topdeck/resilience/cache/redisstore"
	"github.com/topdeck/resilience/config"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/internal/redistest"
	"github.com/topdeck/resilience/internal/testkit"
	limiterredis "github.com/topdeck/resilience/limiter/redisstore"
)

// redisStores returns the Redis stores for cfg on rdb, as cmd/resilienced
// builds them.
func redisStores(cfg *config.Config, rdb redis.UniversalClient) Stores {
	return Stores{
		Limiter: limiterredis.New(rdb, limiterredis.WithPrefix(cfg.RedisKeyPrefix), limiterredis.WithTimeout(storeTimeout)),
		Breaker: breakerredis.New(rdb, breakerredis.WithPrefix(cfg.RedisKeyPrefix)),
		Cache:   cacheredis.New(rdb, cacheredis.WithPrefix(cfg.RedisKeyPrefix)),
	}
}

// BenchmarkCacheGetFloor puts a cache Get through the service next to what
// bounds it from below, one caller at a time, all on TCP loopback and one
// private redis-server:
//
//   - RedisGET: a go-redis GET (the yardstick);
//   - BareGRPC: a health check on a grpc.Server with no interceptors, the
//     cheapest unary gRPC round trip there is;
//   - ServiceHealth: a health check on this package's Server (correlation,
//     metrics, logging at warn, recovery);
//   - ServiceCacheGet: a cache hit through this package's Server on Redis.
//
// Run: go test -run '^$' -bench CacheGetFloor -benchtime 3s -count 5 ./server/
func BenchmarkCacheGetFloor(b *testing.B) {
	ctx := context.Background()
	rdb := redistest.Start(b).Client()
	redistest.BenchmarkGET(b, "RedisGET", rdb, make([]byte, 256))

	bare := grpc.NewServer()
	healthpb.RegisterHealthServer(bare, health.NewServer())
	bareConn := serveTCP(b, bare)
	b.Run("BareGRPC", func(b *testing.B) { benchHealth(b, bareConn) })

	cfg := config.Default()
	backends, err := NewBackends(cfg, redisStores(cfg, rdb), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = backends.Close() })
	conn := serveBench(b, cfg, backends, slog.LevelWarn)
	b.Run("ServiceHealth", func(b *testing.B) { benchHealth(b, conn) })

	cc := resiliencev1.NewCacheServiceClient(conn)
	if _, err := cc.Set(ctx, &resiliencev1.SetRequest{Key: "k", Value: make([]byte, 256)}); err != nil {
		b.Fatal(err)
	}
	b.Run("ServiceCacheGet", func(b *testing.B) {
		req := &resiliencev1.GetRequest{Key: "k"}
		for b.Loop() {
			r, err := cc.Get(ctx, req)
			if err != nil || !r.GetFound() || r.GetDegraded() {
				b.Fatal(r, err)
			}
		}
	})
}

// runBackends builds the backends of cfg on st and runs them until the
// benchmark ends, then closes them.
func runBackends(b *testing.B, cfg *config.Config, st Stores, opts ...BackendOption) *Backends {
	b.Helper()
	backends, err := NewBackends(cfg, st, slog.New(slog.DiscardHandler), opts...)
	if err != nil {
		b.Fatal(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); backends.Run(rctx) }()
	b.Cleanup(func() { cancel(); wg.Wait(); _ = backends.Close() })
	return backends
}

// serveBench serves the service on cfg and backends, its JSON log at level
// written to io.Discard, on a loopback port until the benchmark ends, and
// returns a client connection to it.
func serveBench(b *testing.B, cfg *config.Config, backends *Backends, level slog.Level) *grpc.ClientConn {
	b.Helper()
	logger := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: level}))
	return serveTCP(b, New(cfg, backends, WithLogger(logger)).GRPC())
}

// serveTCP serves s on a loopback port until the benchmark ends and returns
// a client connection to it.
func serveTCP(b *testing.B, s *grpc.Server) *grpc.ClientConn {
	b.Helper()
	lis := testkit.Listen(b)
	testkit.Serve(b, lis, s.Serve, s.Stop)
	return testkit.Dial(b, lis.Addr().String())
}

func benchHealth(b *testing.B, conn *grpc.ClientConn) {
	hc := healthpb.NewHealthClient(conn)
	req := &healthpb.HealthCheckRequest{}
	for b.Loop() {
		if _, err := hc.Check(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
