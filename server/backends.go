package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/topdeck/resilience/cache"
	cacheredis "github.com/topdeck/resilience/cache/redisstore"
	"github.com/topdeck/resilience/config"
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
	// Store names the shared store: "memory" or "redis".
	Store string

	log *slog.Logger
}

// cacheStoreTimeout bounds each cache store call, so that a dead Redis gives a
// degraded answer well within 250 ms.
const cacheStoreTimeout = 200 * time.Millisecond

// NewBackends builds the components for cfg. With rdb nil they run on the
// embedded memory stores; otherwise on Redis through rdb, which the caller
// owns and closes after Run has returned.
func NewBackends(cfg *config.Config, rdb redis.UniversalClient, log *slog.Logger) (*Backends, error) {
	if log == nil {
		log = slog.Default()
	}
	b := &Backends{log: log}
	var (
		lstore limiter.Store
		cstore cache.Store
	)
	if rdb == nil {
		b.Store = "memory"
		lstore = limiter.NewMemoryStore()
		ms, err := cache.NewMemoryStore(cache.WithMaxEntries(int(cfg.Cache.MaxMemoryEntries)))
		if err != nil {
			return nil, fmt.Errorf("server: cache memory store: %w", err)
		}
		cstore = ms
	} else {
		b.Store = "redis"
		lstore = limiterredis.New(rdb, limiterredis.WithPrefix(cfg.RedisKeyPrefix))
		cstore = cacheredis.New(rdb, cacheredis.WithPrefix(cfg.RedisKeyPrefix))
	}
	b.Limiter = limiter.New(lstore)
	c, err := cache.New(cstore,
		cache.WithDefaultTTL(cfg.Cache.DefaultTTL.D()),
		cache.WithMaxValueBytes(int(cfg.Cache.MaxValueBytes)),
		cache.WithStoreTimeout(cacheStoreTimeout),
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

// Run does the components' background work until ctx is done, then returns
// after a last bounded flush of the cache statistics.
func (b *Backends) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = b.Cache.Run(ctx)
	}()
	wg.Wait()
}
