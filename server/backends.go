package server

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/topdeck/resilience/breaker"
	breakerredis "github.com/topdeck/resilience/breaker/redisstore"
	"github.com/topdeck/resilience/cache"
	cacheredis "github.com/topdeck/resilience/cache/redisstore"
	"github.com/topdeck/resilience/config"
	"github.com/topdeck/resilience/envoyrls"
	"github.com/topdeck/resilience/limiter"
	limiterredis "github.com/topdeck/resilience/limiter/redisstore"
)

// Backends are the domain components behind the handlers, on one kind of
// store: the embedded memory stores (one replica) or Redis (a fleet).
//
// Create them with NewBackends; run their background work (cache statistics
// flushing) with Run. The components are safe for concurrent use.
type Backends struct {
	// Limiter decides Acquire's rate limits.
	Limiter *limiter.Limiter
	// Cache serves CacheService.
	Cache *cache.Cache
	// Breaker decides and records breaker state, with a per-replica
	// fallback while the shared store is down.
	Breaker *breaker.Breaker
	// EnvoyRLS serves Envoy's rate limit protocol on the same limiter.
	EnvoyRLS *envoyrls.Server
	// States is this replica's view of breaker states, fed by the shared
	// store's events, so that CLOSED breakers cost no store round trip.
	States *breaker.StateCache

	log          *slog.Logger
	metrics      *Metrics // nil: none
	breakerStore breakerStore
	pruneEvery   time.Duration // the registry pruning period (pruneEvery)
	cacheRDB     redis.UniversalClient
}

// BackendOption configures NewBackends.
type BackendOption func(*Backends)

// WithBackendMetrics records the metrics of the components, and of the
// Server built on them (gRPC requests, Acquire decisions, cache requests),
// in m (default: none).
func WithBackendMetrics(m *Metrics) BackendOption { return func(b *Backends) { b.metrics = m } }

// WithCacheRedis gives the cache its own Redis client (the caller owns it),
// so that cache pressure can never evict rate-limit or breaker keys. By
// default the cache shares the Redis client of NewBackends.
func WithCacheRedis(c redis.UniversalClient) BackendOption {
	return func(b *Backends) { b.cacheRDB = c }
}

// breakerStore is a breaker.Store that holds resources (watchers).
type breakerStore interface {
	breaker.Store
	Close() error
}

// storeTimeout bounds each limiter decision batch and each cache call on
// Redis, on top of the client's own timeouts (internal/redisconn): a dead
// Redis fails at dial long before it, a hung one is given up after it.
const storeTimeout = 200 * time.Millisecond

// NewBackends builds the components for cfg. With rdb nil they run on the
// embedded memory stores; otherwise on Redis through rdb, which the caller
// owns and closes after Run has returned.
func NewBackends(cfg *config.Config, rdb redis.UniversalClient, log *slog.Logger, opts ...BackendOption) (*Backends, error) {
	if log == nil {
		log = slog.Default()
	}
	b := &Backends{log: log, pruneEvery: pruneEvery}
	for _, o := range opts {
		o(b)
	}
	var (
		lstore limiter.Store
		cstore cache.Store
		bstore breakerStore
	)
	if rdb == nil {
		lstore = limiter.NewMemoryStore()
		ms, err := cache.NewMemoryStore(cache.WithMaxEntries(int(cfg.Cache.MaxMemoryEntries)))
		if err != nil {
			return nil, fmt.Errorf("server: cache memory store: %w", err)
		}
		cstore = ms
		bstore = breaker.NewMemoryStore()
	} else {
		lstore = limiterredis.New(rdb, limiterredis.WithPrefix(cfg.RedisKeyPrefix), limiterredis.WithTimeout(storeTimeout))
		crdb := rdb
		if b.cacheRDB != nil {
			crdb = b.cacheRDB
		}
		cstore = cacheredis.New(crdb, cacheredis.WithPrefix(cfg.RedisKeyPrefix))
		bstore = breakerredis.New(rdb, breakerredis.WithPrefix(cfg.RedisKeyPrefix))
	}
	b.breakerStore = bstore
	b.Breaker = breaker.New(bstore)
	b.States = breaker.NewStateCache()
	b.Limiter = limiter.New(lstore)
	rls, err := envoyrls.New(b.Limiter, cfg.EnvoyRateLimit)
	if err != nil {
		return nil, fmt.Errorf("server: envoy_ratelimit: %w", err)
	}
	b.EnvoyRLS = rls
	c, err := cache.New(cstore,
		cache.WithDefaultTTL(cfg.Cache.DefaultTTL.D()),
		cache.WithMaxValueBytes(int(cfg.Cache.MaxValueBytes)),
		cache.WithStoreTimeout(storeTimeout),
		cache.WithFlushErrorHandler(func(err error) {
			log.Debug("cache statistics flush failed; will retry", "error", err.Error())
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("server: cache: %w", err)
	}
	b.Cache = c
	return b, nil
}

// Run does the components' background work until ctx is done: the cache
// statistics flush (with a last bounded flush at the end) and the breaker
// state cache's subscription to the shared store's events (re-established
// while the store is unreachable). Run returns when all of it has stopped;
// then call Close.
func (b *Backends) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		_ = b.Cache.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		b.watchStates(ctx)
	}()
	go func() {
		defer wg.Done()
		b.pruneRegistry(ctx)
	}()
	wg.Wait()
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
	p, ok := b.breakerStore.(registryPruner)
	if !ok {
		return
	}
	jittered := func() time.Duration { // a quarter of the period, ±20 %
		q := b.pruneEvery / 4
		return q - q/5 + rand.N(2*q/5)
	}
	repeat(ctx, jittered(), jittered, func() {
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

// repeat runs fn after first, then again each next() after fn returns,
// until ctx ends.
func repeat(ctx context.Context, first time.Duration, next func() time.Duration, fn func()) {
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fn()
		t.Reset(next())
	}
}

// watchRetry is the pause before re-subscribing to breaker events.
const watchRetry = time.Second

func (b *Backends) watchStates(ctx context.Context) {
	repeat(ctx, 0, func() time.Duration { return watchRetry }, func() {
		if err := b.followEvents(ctx); err != nil && ctx.Err() == nil {
			b.log.Debug("breaker events unavailable; retrying", "error", err.Error())
		}
	})
}

// followEvents feeds every breaker transition, made by any replica, to the
// state cache and the metrics until ctx ends or the subscription fails. The
// state cache is cleared when it returns: no events keep it right then.
func (b *Backends) followEvents(ctx context.Context) error {
	defer b.States.Clear()
	events, err := b.Breaker.Watch(ctx, "")
	if err != nil {
		return err
	}
	for e := range events {
		b.States.Apply(e)
		b.metrics.observeEvent(e)
	}
	return nil
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

// Close releases the components' resources (breaker watchers). It does not
// close the Redis client. Call it after Run has returned.
func (b *Backends) Close() error {
	err := b.Breaker.Close()
	if cerr := b.breakerStore.Close(); err == nil {
		err = cerr
	}
	return err
}
