package client_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"

	"github.com/topdeck/resilience/breaker"
	breakerredis "github.com/topdeck/resilience/breaker/redisstore"
	"github.com/topdeck/resilience/cache"
	cacheredis "github.com/topdeck/resilience/cache/redisstore"
	"github.com/topdeck/resilience/config"
	"github.com/topdeck/resilience/correlation"
	"github.com/topdeck/resilience/internal/testkit"
	"github.com/topdeck/resilience/limiter"
	limiterredis "github.com/topdeck/resilience/limiter/redisstore"
	"github.com/topdeck/resilience/server"
)

// testConfig has small breaker thresholds and a named limit.
const testConfig = `
limits:
  reports:
    max_calls: 2
    time_window: 1m
breakers:
  default:
    failure_threshold: 2
    recovery_timeout: 1m
`

// service is a resilience server over bufconn, with a connection to it.
type service struct {
	conn *grpc.ClientConn
	lis  *bufconn.Listener

	mu      sync.Mutex // protects the fields below
	methods map[string]int
	ids     []string // correlation ids received
	stop    func()
}

func (s *service) record(ctx context.Context, method string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.methods[method]++
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		s.ids = append(s.ids, md.Get(correlation.Header)...)
	}
}

// Calls returns how many calls of method the server received.
func (s *service) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.methods[method]
}

// IDs returns the correlation ids the server received.
func (s *service) IDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ids...)
}

// stores returns the stores of cfg as cmd/resilienced builds them: the
// memory ones with rdb nil, else the Redis ones on rdb.
func stores(cfg *config.Config, rdb redis.UniversalClient) (server.Stores, error) {
	if rdb == nil {
		cs, err := cache.NewMemoryStore(cache.WithMaxEntries(int(cfg.Cache.MaxMemoryEntries)))
		return server.Stores{Limiter: limiter.NewMemoryStore(), Breaker: breaker.NewMemoryStore(), Cache: cs}, err
	}
	return server.Stores{
		Limiter: limiterredis.New(rdb, limiterredis.WithPrefix(cfg.RedisKeyPrefix), limiterredis.WithTimeout(200*time.Millisecond)),
		Breaker: breakerredis.New(rdb, breakerredis.WithPrefix(cfg.RedisKeyPrefix)),
		Cache:   cacheredis.New(rdb, cacheredis.WithPrefix(cfg.RedisKeyPrefix)),
	}, nil
}

// startService starts server.New on bufconn with memory backends (rdb nil)
// or Redis. It does not need a testing.T, so that examples can use it.
func startService(yaml string, rdb redis.UniversalClient) (*service, error) {
	cfg := config.Default()
	if yaml != "" {
		var err error
		if cfg, err = config.Parse("test.yaml", []byte(yaml)); err != nil {
			return nil, err
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := stores(cfg, rdb)
	if err != nil {
		return nil, err
	}
	b, err := server.NewBackends(cfg, st, log)
	if err != nil {
		return nil, err
	}
	s := &service{lis: bufconn.Listen(1 << 20), methods: make(map[string]int)}
	srv := server.New(cfg, b, server.WithLogger(log), server.WithGRPCOptions(grpc.ChainUnaryInterceptor(
		func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			s.record(ctx, info.FullMethod)
			return h(ctx, req)
		})))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = srv.Serve(s.lis) }()
	go func() { defer wg.Done(); b.Run(ctx) }()
	s.conn, err = grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return s.lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("grpc.NewClient: %w", err)
	}
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			_ = s.conn.Close()
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			srv.Shutdown(sctx)
			cancel()
			wg.Wait()
			_ = b.Close()
		})
	}
	return s, nil
}

// mustService starts a service for a test.
func mustService(t testing.TB, yaml string, rdb redis.UniversalClient) *service {
	t.Helper()
	s, err := startService(yaml, rdb)
	if err != nil {
		t.Fatalf("startService: %v", err)
	}
	t.Cleanup(s.stop)
	return s
}

// ctxT returns a context that ends after 10s or with t.
func ctxT(t testing.TB) context.Context { return testkit.Context(t, 10*time.Second) }
