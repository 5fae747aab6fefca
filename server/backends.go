package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/topdeck/resilience/admission"
	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/cache"
	"github.com/topdeck/resilience/config"
	"github.com/topdeck/resilience/envoyrls"
	"github.com/topdeck/resilience/internal/repeat"
	"github.com/topdeck/resilience/limiter"
)

// Stores are the stores the Backends decide on: the embedded memory stores
// (one replica) or the Redis ones (a fleet). cmd/resilienced builds them;
// the server knows them only by these interfaces.
type Stores struct {
	Limiter limiter.Store
	Breaker breaker.Store
	Cache   cache.Store
}

// Backends are the domain components behind the handlers, on one set of
// Stores.
//
// Create them with NewBackends; run their background work with Run (the
// cache statistics flush, the breaker state cache's subscription to the
// store's events, the pruning of the breaker registry), then Close. The
// components are safe for concurrent use.
type Backends struct {
	// Limiter decides Acquire's rate limits.
	Limiter *limiter.Limiter
	// Cache serves CacheService.
	Cache *cache.Cache
	// Breaker decides and records breaker state, with a per-replica
	// fallback while the shared store is down; it admits the breakers that
	// States knows to be CLOSED without a store round trip.
	Breaker *breaker.Breaker
	// Admission decides Acquire: the breaker first, then the limit.
	Admission *admission.Admitter
	// EnvoyRLS serves Envoy's rate limit protocol on the same limiter.
	EnvoyRLS *envoyrls.Server
	// States is this replica's view of breaker states, fed by the shared
	// store's events (Run) and by the store's answers (Breaker).
	States *breaker.StateCache

	log        *slog.Logger
	metrics    *Metrics // nil: none
	stores     Stores
	now        func() time.Time
	pruneEvery time.Duration // the registry pruning period (pruneEvery)

	following     chan struct{} // closed once the state cache follows the events
	followingOnce sync.Once
}

// BackendOption configures NewBackends.
type BackendOption func(*Backends)

// WithBackendMetrics records the metrics of the components, and of the
// Server built on them (gRPC requests, Acquire decisions, cache requests),
// in m (default: none).
func WithBackendMetrics(m *Metrics) BackendOption { return func(b *Backends) { b.metrics = m } }

// WithBackendClock sets the clock of the components (the limiter's deny
// cache and fallback, the breaker's fallback, the state cache, the dry-run
// answers), for tests; default time.Now. The stores read their own clocks.
func WithBackendClock(now func() time.Time) BackendOption { return func(b *Backends) { b.now = now } }

// storeTimeout bounds each cache call on the store, on top of the client's
// own timeouts (internal/redisconn): a dead Redis fails at dial long before
// it, a hung one is given up after it.
const storeTimeout = 200 * time.Millisecond

// deadlineMargin is kept between the end of a reservation's wait and the
// caller's deadline, for the answer to travel back.
const deadlineMargin = 5 * time.Millisecond

// NewBackends builds the components for cfg on st. The Backends own the
// stores from then on: Close closes those that have a Close method.
func NewBackends(cfg *config.Config, st Stores, log *slog.Logger, opts ...BackendOption) (*Backends, error) {
	if st.Limiter == nil || st.Breaker == nil || st.Cache == nil {
		return nil, errors.New("server: NewBackends needs a limiter, a breaker and a cache store")
	}
	if log == nil {
		log = slog.Default()
	}
	b := &Backends{log: log, stores: st, now: time.Now, pruneEvery: pruneEvery, following: make(chan struct{})}
	for _, o := range opts {
		o(b)
	}
	b.States = breaker.NewStateCache(breaker.WithCacheClock(b.now), breaker.WithCacheHooks(breaker.CacheHooks{
		Watching: func() { b.followingOnce.Do(func() { close(b.following) }) },
		Event:    b.metrics.observeEvent,
		Observed: b.metrics.observeBreaker,
	}))
	b.Breaker = breaker.New(st.Breaker, breaker.WithClock(b.now), breaker.WithStateCache(b.States))
	b.Limiter = limiter.New(st.Limiter, limiter.WithClock(b.now), limiter.WithStoreTimeout(storeTimeout))
	b.Admission = admission.New(b.Breaker, b.Limiter,
		admission.WithClock(b.now),
		admission.WithDeadlineMargin(deadlineMargin),
		admission.WithReleaseErrorHandler(func(ctx context.Context, name string, err error) {
			log.WarnContext(ctx, "cannot release an unused probe lease; it will expire", "breaker", name, "error", err.Error())
		}))
	rls, err := envoyrls.New(b.Limiter, cfg.EnvoyRateLimit)
	if err != nil {
		return nil, fmt.Errorf("server: envoy_ratelimit: %w", err)
	}
	b.EnvoyRLS = rls
	copts := []cache.Option{
		cache.WithDefaultTTL(cfg.Cache.DefaultTTL.D()),
		cache.WithMaxValueBytes(int(cfg.Cache.MaxValueBytes)),
		cache.WithStoreTimeout(storeTimeout),
		cache.WithFlushErrorHandler(func(err error) {
			log.Debug("cache statistics flush failed; will retry", "error", err.Error())
		}),
	}
	if ml := cfg.Cache.MemoryLayer; !ml.On() {
		copts = append(copts, cache.WithMemoryLayer(nil))
	} else if ml.MaxEntries > 0 || ml.MaxBytes > 0 {
		var nopts []cache.NearOption
		if ml.MaxEntries > 0 {
			nopts = append(nopts, cache.WithNearMaxEntries(int(ml.MaxEntries)))
		}
		if ml.MaxBytes > 0 {
			nopts = append(nopts, cache.WithNearMaxBytes(ml.MaxBytes))
		}
		if _, mem := st.Cache.(*cache.MemoryStore); !mem {
			near, err := cache.NewNear(nopts...)
			if err != nil {
				return nil, fmt.Errorf("server: cache.memory_layer: %w", err)
			}
			copts = append(copts, cache.WithMemoryLayer(near))
		}
	}
	c, err := cache.New(st.Cache, copts...)
	if err != nil {
		return nil, fmt.Errorf("server: cache: %w", err)
	}
	b.Cache = c
	return b, nil
}

// Run does the components' background work until ctx is done: the cache's
// (statistics flush, with a last bounded flush at the end), the breaker
// state cache's subscription to the shared store's events (re-established
// while the store is unreachable) and the pruning of the breaker registry.
// Run returns when all of it has stopped; then call Close.
func (b *Backends) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, run := range []func(context.Context){
		func(ctx context.Context) { _ = b.Cache.Run(ctx) },
		b.followEvents,
		b.pruneRegistry,
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run(ctx)
		}()
	}
	wg.Wait()
}

// Following is closed once Run's state cache follows the shared store's
// events: from then on, a transition made by any replica reaches States
// (and the metrics).
func (b *Backends) Following() <-chan struct{} { return b.following }

// watchRetry is the pause before re-subscribing to breaker events.
const watchRetry = time.Second

// followEvents runs the state cache on the breaker's events until ctx ends,
// subscribing again after watchRetry when the subscription fails or ends.
func (b *Backends) followEvents(ctx context.Context) {
	repeat.Run(ctx, 0, func() time.Duration { return watchRetry }, func() {
		if err := b.States.Run(ctx, b.Breaker, ""); err != nil && ctx.Err() == nil {
			b.log.Debug("breaker events unavailable; retrying", "error", err.Error())
		}
	})
}

// registryPruner is a breaker store with a shared registry of names to
// prune (breaker/redisstore); the memory store forgets idle breakers itself.
type registryPruner interface {
	Prune(ctx context.Context, every time.Duration) (removed int, ran bool, err error)
}

// pruneEvery is how often the fleet prunes the breaker registry: each
// replica tries four times per period, at jittered times, and the store's
// lock lets one of them prune per period.
const pruneEvery = time.Hour

// pruneRegistry removes idle breaker names from the shared registry until
// ctx ends (nothing to do on the memory store).
func (b *Backends) pruneRegistry(ctx context.Context) {
	p, ok := b.stores.Breaker.(registryPruner)
	if !ok {
		return
	}
	jittered := func() time.Duration { // a quarter of the period, ±20 %
		q := b.pruneEvery / 4
		return q - q/5 + rand.N(2*q/5)
	}
	repeat.Run(ctx, jittered(), jittered, func() {
		n, ran, err := p.Prune(ctx, b.pruneEvery)
		b.metrics.observePruned(n)
		switch {
		case err != nil && ctx.Err() == nil:
			b.log.Warn("pruning the breaker registry failed; will retry", "removed", n, "error", err.Error())
		case ran:
			b.log.Info("pruned the breaker registry", "removed", n)
		}
	})
}

// StoreDataLost is called when the shared store is found to have lost its
// data (the store probe's epoch check). The state cache forgets its CLOSED
// entries, so that no breaker is admitted on a generation the store no
// longer has, and re-reads the OPEN and HALF_OPEN ones, announcing an event
// (reason data_loss) for each that changed.
func (b *Backends) StoreDataLost(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	events, err := b.States.Resync(ctx, b.Breaker)
	if err != nil {
		b.States.Clear()
		b.log.WarnContext(ctx, "cannot re-read the breakers after the shared store lost its data; state cache cleared", "error", err.Error())
		return
	}
	b.log.WarnContext(ctx, "breakers re-read after the shared store lost its data", "changed", len(events))
}

// closer is a store that holds resources (the breaker stores' watchers).
type closer interface{ Close() error }

// Close releases the components' resources and closes the stores that have
// a Close method. It does not close the Redis clients (their owner does).
// Call it after Run has returned.
func (b *Backends) Close() error {
	errs := []error{b.Breaker.Close()}
	for _, s := range []any{b.stores.Limiter, b.stores.Breaker, b.stores.Cache} {
		if c, ok := s.(closer); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}
