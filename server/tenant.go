package server

import (
	"context"
	"errors"
	"fmt"
	"sync"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/topdeck/resilience/config"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

// Tenants keep each tenant in its own key space: every tenant has its own
// Backends (limiter, breakers, cache, Envoy endpoint) on stores whose keys
// start with TenantKeyPrefix(redis_key_prefix, tenant). Inside it a
// bucket's or breaker's keys still share one {hash tag}, so Redis Cluster
// works as for the implicit tenant, whose keys stay exactly those of a
// server without tenants. Because each tenant has its own stores, listing,
// watching, statistics and pattern deletes see only that tenant's keys, and
// names come back as the tenant wrote them.
//
// Tenants build a tenant's Backends on its first request (tenants come from
// the configuration, so their number is bounded by it) and run their
// background work from Run. Create them with NewTenants; they are safe for
// concurrent use.
type Tenants struct {
	build func(cfg *config.Config) (*Backends, error)

	mu      sync.Mutex // protects the fields below
	cfg     *config.Config
	byName  map[string]*Backends
	runCtx  context.Context // of Run; nil before it
	stopped bool            // Run has returned: start no more work
	wg      sync.WaitGroup  // tenants' Run calls
}

// NewTenants returns the tenants' backends, built by build from cfg with
// the tenant's key prefix (build is typically NewBackends with the
// process's Redis clients and options).
func NewTenants(cfg *config.Config, build func(cfg *config.Config) (*Backends, error)) *Tenants {
	return &Tenants{build: build, cfg: cfg, byName: map[string]*Backends{}}
}

// TenantKeyPrefix is the Redis key prefix of tenant under base (the
// configured redis_key_prefix): base itself for the implicit tenant, else
// base + "t:" + tenant + ":". No key of the implicit tenant starts with
// base + "t:", and tenant names have no ':', so key spaces never overlap.
func TenantKeyPrefix(base, tenant string) string {
	if tenant == "" {
		return base
	}
	return base + "t:" + tenant + ":"
}

// errNoTenants is the answer for a tenant when the server has no Tenants.
var errNoTenants = errors.New("server: tenants are configured but the server was built without WithTenants")

// get returns tenant's Backends, building them on first use.
func (t *Tenants) get(tenant string) (*Backends, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if b, ok := t.byName[tenant]; ok {
		return b, nil
	}
	c := *t.cfg
	c.RedisKeyPrefix = TenantKeyPrefix(t.cfg.RedisKeyPrefix, tenant)
	b, err := t.build(&c)
	if err != nil {
		return nil, fmt.Errorf("server: backends of tenant %q: %w", tenant, err)
	}
	t.byName[tenant] = b
	t.startLocked(b)
	return b, nil
}

// startLocked runs b's background work while Run runs.
func (t *Tenants) startLocked(b *Backends) {
	if t.runCtx == nil || t.stopped {
		return
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		b.Run(t.runCtx)
	}()
}

// SetConfig applies a reloaded configuration to every tenant's backends
// (Envoy domains, cache TTL and value bound) and to those built later. The
// key prefix stays the one they were built with (a restart changes it).
func (t *Tenants) SetConfig(cfg *config.Config) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range t.byName {
		if err := b.EnvoyRLS.SetConfig(cfg.EnvoyRateLimit); err != nil {
			return err
		}
		if err := b.Cache.SetLimits(cfg.Cache.DefaultTTL.D(), int(cfg.Cache.MaxValueBytes)); err != nil {
			return err
		}
	}
	t.cfg = cfg
	return nil
}

// StoreDataLost tells every tenant's Backends built so far that the shared
// store lost its data (see Backends.StoreDataLost).
func (t *Tenants) StoreDataLost(ctx context.Context) {
	t.mu.Lock()
	all := make([]*Backends, 0, len(t.byName))
	for _, b := range t.byName {
		all = append(all, b)
	}
	t.mu.Unlock()
	for _, b := range all {
		b.StoreDataLost(ctx)
	}
}

// Run does the background work of every tenant's Backends (see
// Backends.Run) until ctx is done, and returns when all of it has stopped.
func (t *Tenants) Run(ctx context.Context) {
	t.mu.Lock()
	t.runCtx = ctx
	for _, b := range t.byName {
		t.startLocked(b)
	}
	t.mu.Unlock()
	<-ctx.Done()
	t.mu.Lock()
	t.stopped = true
	t.mu.Unlock()
	t.wg.Wait()
}

// Close releases every tenant's Backends. Call it after Run has returned.
func (t *Tenants) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	for _, b := range t.byName {
		errs = append(errs, b.Close())
	}
	return errors.Join(errs...)
}

// route is the handlers of one tenant.
type route struct {
	res   *resilienceServer
	cache *cacheServer
	b     *Backends
}

// routeFor returns the handlers of the tenant of ctx's principal.
func (s *Server) routeFor(ctx context.Context) (*route, error) {
	p, _ := PrincipalFromContext(ctx)
	if p.Tenant == "" {
		return s.implicit, nil
	}
	s.routesMu.Lock()
	r, ok := s.routes[p.Tenant]
	s.routesMu.Unlock()
	if ok {
		return r, nil
	}
	if s.tenants == nil {
		s.log.ErrorContext(ctx, errNoTenants.Error())
		return nil, status.Error(codes.Internal, "tenant backends unavailable")
	}
	b, err := s.tenants.get(p.Tenant)
	if err != nil {
		s.log.ErrorContext(ctx, "cannot build a tenant's backends", "tenant", p.Tenant, "error", err.Error())
		return nil, status.Error(codes.Internal, "tenant backends unavailable")
	}
	r = newRoute(s, b, p.Tenant)
	s.routesMu.Lock()
	defer s.routesMu.Unlock()
	if prev, ok := s.routes[p.Tenant]; ok {
		return prev, nil
	}
	s.routes[p.Tenant] = r
	return r, nil
}

func newRoute(s *Server, b *Backends, tenant string) *route {
	return &route{
		res:   &resilienceServer{srv: s, b: b, tenant: tenant},
		cache: &cacheServer{srv: s, b: b},
		b:     b,
	}
}

// routed passes a call of the routers to the handler of the caller's
// tenant: pick takes the handler from the tenant's route, call is its method.
func routed[H, Req, Resp any](s *Server, ctx context.Context, req Req, pick func(*route) H, call func(H, context.Context, Req) (Resp, error)) (Resp, error) {
	r, err := s.routeFor(ctx)
	if err != nil {
		var zero Resp
		return zero, err
	}
	return call(pick(r), ctx, req)
}

// resilienceOf and cacheOf are the picks of routed.
func resilienceOf(r *route) *resilienceServer { return r.res }
func cacheOf(r *route) *cacheServer           { return r.cache }

// config is the configuration in force as r's tenant sees it (its own
// named limits and breaker policies over the shared ones).
func (r *resilienceServer) config() *config.Config { return r.srv.Config().Tenant(r.tenant) }

// resilienceRouter serves ResilienceService by passing each call to the
// handlers of the caller's tenant.
type resilienceRouter struct {
	resiliencev1.UnimplementedResilienceServiceServer
	s *Server
}

func (x resilienceRouter) Acquire(ctx context.Context, req *resiliencev1.AcquireRequest) (*resiliencev1.AcquireResponse, error) {
	return routed(x.s, ctx, req, resilienceOf, (*resilienceServer).Acquire)
}

func (x resilienceRouter) ReportOutcome(ctx context.Context, req *resiliencev1.ReportOutcomeRequest) (*resiliencev1.ReportOutcomeResponse, error) {
	return routed(x.s, ctx, req, resilienceOf, (*resilienceServer).ReportOutcome)
}

func (x resilienceRouter) BreakerState(ctx context.Context, req *resiliencev1.BreakerStateRequest) (*resiliencev1.BreakerStateResponse, error) {
	return routed(x.s, ctx, req, resilienceOf, (*resilienceServer).BreakerState)
}

func (x resilienceRouter) ListBreakers(ctx context.Context, req *resiliencev1.ListBreakersRequest) (*resiliencev1.ListBreakersResponse, error) {
	return routed(x.s, ctx, req, resilienceOf, (*resilienceServer).ListBreakers)
}

func (x resilienceRouter) WatchBreakers(req *resiliencev1.WatchBreakersRequest, stream resiliencev1.ResilienceService_WatchBreakersServer) error {
	ctx := stream.Context()
	r, err := x.s.routeFor(ctx)
	if err != nil {
		return err
	}
	p, _ := PrincipalFromContext(ctx)
	perTenant := 0
	if a := x.s.Config().Auth; a != nil && p.Tenant != "" {
		perTenant = a.Limits(p.Tenant).MaxWatchStreams
	}
	release, err := x.s.watches.open(p.Tenant, perTenant)
	if err != nil {
		return err
	}
	defer release()
	return r.res.WatchBreakers(req, stream)
}

func (x resilienceRouter) ResetBreaker(ctx context.Context, req *resiliencev1.ResetBreakerRequest) (*resiliencev1.ResetBreakerResponse, error) {
	return routed(x.s, ctx, req, resilienceOf, (*resilienceServer).ResetBreaker)
}

// cacheRouter serves CacheService for the caller's tenant.
type cacheRouter struct {
	resiliencev1.UnimplementedCacheServiceServer
	s *Server
}

func (x cacheRouter) Get(ctx context.Context, req *resiliencev1.GetRequest) (*resiliencev1.GetResponse, error) {
	return routed(x.s, ctx, req, cacheOf, (*cacheServer).Get)
}

func (x cacheRouter) Set(ctx context.Context, req *resiliencev1.SetRequest) (*resiliencev1.SetResponse, error) {
	return routed(x.s, ctx, req, cacheOf, (*cacheServer).Set)
}

func (x cacheRouter) Delete(ctx context.Context, req *resiliencev1.DeleteRequest) (*resiliencev1.DeleteResponse, error) {
	return routed(x.s, ctx, req, cacheOf, (*cacheServer).Delete)
}

func (x cacheRouter) DeletePattern(ctx context.Context, req *resiliencev1.DeletePatternRequest) (*resiliencev1.DeletePatternResponse, error) {
	return routed(x.s, ctx, req, cacheOf, (*cacheServer).DeletePattern)
}

func (x cacheRouter) GetStats(ctx context.Context, req *resiliencev1.GetStatsRequest) (*resiliencev1.GetStatsResponse, error) {
	return routed(x.s, ctx, req, cacheOf, (*cacheServer).GetStats)
}

// rlsRouter serves Envoy's RateLimitService in the tenant of the principal
// Envoy authenticates as: its buckets are that tenant's.
type rlsRouter struct {
	ratelimitv3.UnimplementedRateLimitServiceServer
	s *Server
}

func (x rlsRouter) ShouldRateLimit(ctx context.Context, req *ratelimitv3.RateLimitRequest) (*ratelimitv3.RateLimitResponse, error) {
	r, err := x.s.routeFor(ctx)
	if err != nil {
		return nil, err
	}
	return r.b.EnvoyRLS.ShouldRateLimit(ctx, req)
}

// watchSlots bound the open WatchBreakers streams of this replica, per
// tenant and in total: each one holds a subscription to the shared store.
// The zero value has no bounds; it is safe for concurrent use.
type watchSlots struct {
	max int // in total; 0: no bound

	mu       sync.Mutex // protects the fields below
	total    int
	byTenant map[string]int
}

// open takes a slot for a stream of tenant, whose own bound is perTenant (0:
// none), and returns the function that gives it back.
func (w *watchSlots) open(tenant string, perTenant int) (release func(), err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.max > 0 && w.total >= w.max {
		return nil, status.Errorf(codes.ResourceExhausted, "this replica has %d open WatchBreakers streams, its limit; close one or watch on another replica", w.max)
	}
	if perTenant > 0 && w.byTenant[tenant] >= perTenant {
		return nil, status.Errorf(codes.ResourceExhausted, "tenant %q has %d open WatchBreakers streams on this replica, its limit (max_watch_streams); close one first", tenant, perTenant)
	}
	if w.byTenant == nil {
		w.byTenant = map[string]int{}
	}
	w.total++
	w.byTenant[tenant]++
	var once sync.Once
	return func() {
		once.Do(func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.total--
			if w.byTenant[tenant]--; w.byTenant[tenant] == 0 {
				delete(w.byTenant, tenant)
			}
		})
	}, nil
}
