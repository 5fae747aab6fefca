package server

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/trace"
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
	log      *slog.Logger
	cfg      atomic.Pointer[config.Config]
	grpc     *grpc.Server
	health   *health.Server
	stopping atomic.Bool
	// storeDown is set while the store probe finds the shared store
	// unreachable or refusing writes (SetStoreHealthy).
	storeDown atomic.Bool

	// streamsCtx ends when Shutdown starts, to end the streams that would
	// otherwise hold a graceful stop until its deadline (WatchBreakers).
	streamsCtx  context.Context
	stopStreams context.CancelFunc

	// Security: the handlers of the implicit tenant and of the others
	// (built on their first call), the audit trail, the tenants' request
	// rates and the bound on open watches.
	implicit   *route
	tenants    *Tenants // nil: only the implicit tenant can be served
	routesMu   sync.Mutex
	routes     map[string]*route // by tenant; protected by routesMu
	audit      *auditor
	tenantRate *tenantRate
	watches    *watchSlots
	transport  Transport
}

// options are the settings of New.
type options struct {
	logger *slog.Logger
	tracer trace.TracerProvider
	extra  []grpc.ServerOption

	tenants      *Tenants
	auditLog     *slog.Logger
	noReflection bool
	maxWatches   int
	transport    Transport
}

// Option configures New.
type Option func(*options)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithTracerProvider traces every RPC with OpenTelemetry through tp (default:
// no tracing, at no cost). Log lines of a traced call carry its trace_id.
func WithTracerProvider(tp trace.TracerProvider) Option { return func(o *options) { o.tracer = tp } }

// WithGRPCOptions adds options to the underlying grpc.Server.
func WithGRPCOptions(opts ...grpc.ServerOption) Option {
	return func(o *options) { o.extra = append(o.extra, opts...) }
}

// New returns a server with the configuration cfg whose handlers use b. It
// records its gRPC metrics in b's metrics (see WithBackendMetrics), when
// there are any. It does not listen yet.
func New(cfg *config.Config, b *Backends, opts ...Option) *Server {
	o := options{logger: slog.Default(), maxWatches: DefaultMaxWatchStreams}
	for _, opt := range opts {
		opt(&o)
	}
	if o.auditLog == nil {
		o.auditLog = o.logger
	}
	if o.transport.MaxRecvMsgBytes <= 0 {
		o.transport.MaxRecvMsgBytes = cfg.MaxRecvMessageBytes()
	}
	o.transport = o.transport.withDefaults()
	s := &Server{
		log: o.logger, health: health.NewServer(),
		tenants: o.tenants, routes: map[string]*route{},
		audit:      &auditor{log: o.auditLog, metrics: b.metrics},
		tenantRate: newTenantRate(),
		watches:    &watchSlots{max: max(o.maxWatches, 0)},
		transport:  o.transport,
	}
	s.implicit = newRoute(s, b, "")
	s.streamsCtx, s.stopStreams = context.WithCancel(context.Background())
	s.cfg.Store(cfg)
	gopts := interceptors(o.logger, b.metrics)
	// Authentication, roles and the tenant's request rate run inside the
	// chain above, so that its logs and metrics record their refusals.
	g := guard{srv: s}
	gopts = append(gopts, grpc.ChainUnaryInterceptor(g.unary), grpc.ChainStreamInterceptor(g.stream))
	gopts = append(gopts, o.transport.serverOptions()...)
	if o.tracer != nil {
		gopts = append(gopts, grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(o.tracer))))
	}
	// A pool of long-lived stream workers: their stacks have grown to what a
	// handler needs once, instead of growing (and being copied) on every
	// call. Calls beyond the pool still get a goroutine of their own.
	gopts = append(gopts, grpc.NumStreamWorkers(streamWorkers))
	s.grpc = grpc.NewServer(append(gopts, o.extra...)...)
	resiliencev1.RegisterResilienceServiceServer(s.grpc, resilienceRouter{s: s})
	resiliencev1.RegisterCacheServiceServer(s.grpc, cacheRouter{s: s})
	ratelimitv3.RegisterRateLimitServiceServer(s.grpc, rlsRouter{s: s})
	healthpb.RegisterHealthServer(s.grpc, s.health)
	if !o.noReflection {
		reflection.Register(s.grpc)
	}
	for _, name := range []string{"", resiliencev1.ResilienceService_ServiceDesc.ServiceName, resiliencev1.CacheService_ServiceDesc.ServiceName, envoyRLSName} {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	s.SetStoreHealthy(true)
	if b.metrics != nil {
		b.metrics.grpc.InitializeMetrics(s.grpc)
	}
	return s
}

// Serving reports whether the server takes calls: true until Shutdown.
func (s *Server) Serving() bool { return !s.stopping.Load() }

// Config returns the configuration in force.
func (s *Server) Config() *config.Config { return s.cfg.Load() }

// SetConfig replaces the configuration; the next request uses it.
func (s *Server) SetConfig(c *config.Config) { s.cfg.Store(c) }

// SetStoreHealthy sets the health of StoreHealthName.
//
// While it is unhealthy, answers that report on the store as a whole
// (GetStats) say degraded.
func (s *Server) SetStoreHealthy(ok bool) {
	s.storeDown.Store(!ok)
	st := healthpb.HealthCheckResponse_SERVING
	if !ok {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	s.health.SetServingStatus(StoreHealthName, st)
}

// envoyRLSName is the health name of Envoy's rate limit service.
const envoyRLSName = "envoy.service.ratelimit.v3.RateLimitService"

// GRPC returns the underlying grpc.Server, to register more services.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Serve accepts connections on lis until Shutdown.
func (s *Server) Serve(lis net.Listener) error { return s.grpc.Serve(lis) }

// Shutdown marks every health name NOT_SERVING, lets in-flight calls finish
// until ctx is done, then stops the server hard. Streams (WatchBreakers)
// end at once, since they would never finish on their own.
func (s *Server) Shutdown(ctx context.Context) {
	s.stopping.Store(true)
	s.health.Shutdown()
	s.stopStreams()
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

// streamWorkers is the number of gRPC stream workers (see New).
const streamWorkers = 128

// DefaultShutdownTimeout is how long cmd/resilienced lets in-flight calls
// finish on SIGTERM.
const DefaultShutdownTimeout = 10 * time.Second
