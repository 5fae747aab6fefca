package server

import (
	"context"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/topdeck/resilience/config"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

// StoreHealthName is the gRPC health service name that reports whether the
// shared store (Redis) is reachable. The overall service ("") stays SERVING
// while Redis is down, because the server still answers (degraded).
const StoreHealthName = "redis"

// Server is the gRPC server of the resilience service: both services, the
// interceptor chain, gRPC health and server reflection.
//
// Create it with New, start it with Serve and stop it with Shutdown. Its
// methods are safe for concurrent use.
type Server struct {
	log    *slog.Logger
	cfg    atomic.Pointer[config.Config]
	grpc   *grpc.Server
	health *health.Server
}

// options are the settings of New.
type options struct {
	logger *slog.Logger
	extra  []grpc.ServerOption
}

// Option configures New.
type Option func(*options)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithGRPCOptions adds options to the underlying grpc.Server.
func WithGRPCOptions(opts ...grpc.ServerOption) Option {
	return func(o *options) { o.extra = append(o.extra, opts...) }
}

// New returns a server with the configuration cfg whose handlers use b. It
// does not listen yet.
func New(cfg *config.Config, b *Backends, opts ...Option) *Server {
	o := options{logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Server{log: o.logger, health: health.NewServer()}
	s.cfg.Store(cfg)
	gopts := append(interceptors(o.logger), o.extra...)
	s.grpc = grpc.NewServer(gopts...)
	resiliencev1.RegisterResilienceServiceServer(s.grpc, &resilienceServer{srv: s, b: b})
	resiliencev1.RegisterCacheServiceServer(s.grpc, &cacheServer{srv: s, b: b})
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	for _, name := range []string{"", resiliencev1.ResilienceService_ServiceDesc.ServiceName, resiliencev1.CacheService_ServiceDesc.ServiceName} {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	s.SetStoreHealthy(true)
	return s
}

// Config returns the configuration in force.
func (s *Server) Config() *config.Config { return s.cfg.Load() }

// SetConfig replaces the configuration; the next request uses it.
func (s *Server) SetConfig(c *config.Config) { s.cfg.Store(c) }

// SetStoreHealthy sets the health of StoreHealthName.
func (s *Server) SetStoreHealthy(ok bool) {
	st := healthpb.HealthCheckResponse_SERVING
	if !ok {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	s.health.SetServingStatus(StoreHealthName, st)
}

// GRPC returns the underlying grpc.Server, to register more services.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Serve accepts connections on lis until Shutdown.
func (s *Server) Serve(lis net.Listener) error { return s.grpc.Serve(lis) }

// Shutdown marks every health name NOT_SERVING, lets in-flight calls finish
// until ctx is done, then stops the server hard. Streams (WatchBreakers)
// end at once, since they would never finish on their own.
func (s *Server) Shutdown(ctx context.Context) {
	s.health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("graceful stop timed out; closing remaining calls")
		s.grpc.Stop()
		<-done
	}
}

// DefaultShutdownTimeout is how long cmd/resilienced lets in-flight calls
// finish on SIGTERM.
const DefaultShutdownTimeout = 10 * time.Second
