package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/topdeck/resilience/breaker"
	breakerredis "github.com/topdeck/resilience/breaker/redisstore"
	"github.com/topdeck/resilience/cache"
	cacheredis "github.com/topdeck/resilience/cache/redisstore"
	"github.com/topdeck/resilience/config"
	"github.com/topdeck/resilience/limiter"
	limiterredis "github.com/topdeck/resilience/limiter/redisstore"
	"github.com/topdeck/resilience/server"
)

// storeTimeout bounds each limiter decision batch on Redis, on top of the
// client's own timeouts (internal/redisconn): a dead Redis fails at dial
// long before it, a hung one is given up after it.
const storeTimeout = 200 * time.Millisecond

// storeClients are the Redis clients the stores run on; this process owns
// and closes them after the stores.
type storeClients struct {
	// limits is the Redis of rate limits and breakers; nil: the embedded
	// memory stores, one replica only.
	limits redis.UniversalClient
	// cache is the cache's own Redis (--cache-redis-url); nil: limits.
	cache redis.UniversalClient
}

// stores builds the stores of cfg, in its key prefix (cfg.RedisKeyPrefix,
// a tenant's own for a tenant): on Redis when there is a client, else the
// embedded memory stores bounded by cfg.Cache.MaxMemoryEntries. The
// server's Backends own them from then on.
func (c storeClients) stores(cfg *config.Config) (server.Stores, error) {
	if c.limits == nil {
		cs, err := cache.NewMemoryStore(cache.WithMaxEntries(int(cfg.Cache.MaxMemoryEntries)))
		if err != nil {
			return server.Stores{}, fmt.Errorf("cache memory store: %w", err)
		}
		return server.Stores{Limiter: limiter.NewMemoryStore(), Breaker: breaker.NewMemoryStore(), Cache: cs}, nil
	}
	crdb := c.cache
	if crdb == nil {
		crdb = c.limits
	}
	return server.Stores{
		Limiter: limiterredis.New(c.limits, limiterredis.WithPrefix(cfg.RedisKeyPrefix), limiterredis.WithTimeout(storeTimeout)),
		Breaker: breakerredis.New(c.limits, breakerredis.WithPrefix(cfg.RedisKeyPrefix)),
		Cache:   cacheredis.New(crdb, cacheredis.WithPrefix(cfg.RedisKeyPrefix)),
	}, nil
}

// builder returns the function that builds the Backends of a
// configuration on stores of c: the implicit tenant's and, through
// server.Tenants, every other tenant's in its own key prefix.
func (c storeClients) builder(log *slog.Logger, opts ...server.BackendOption) func(*config.Config) (*server.Backends, error) {
	return func(cfg *config.Config) (*server.Backends, error) {
		st, err := c.stores(cfg)
		if err != nil {
			return nil, err
		}
		return server.NewBackends(cfg, st, log, opts...)
	}
}

// background runs the process's loops, each the Run of a type, until
// Close, which ends them and waits for them. Create it with newBackground.
type background struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newBackground() *background {
	ctx, cancel := context.WithCancel(context.Background())
	return &background{ctx: ctx, cancel: cancel}
}

// Go runs run(ctx) until Close.
func (b *background) Go(run func(context.Context)) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		run(b.ctx)
	}()
}

// Close ends every loop and returns when all have returned.
func (b *background) Close() {
	b.cancel()
	b.wg.Wait()
}
