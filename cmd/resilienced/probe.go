package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Eviction policies of --redis-eviction: what the service does when the
// shared Redis may evict its limiter and breaker keys.
const (
	EvictionWarn   = "warn"   // log an error, meter it, keep serving
	EvictionRefuse = "refuse" // refuse to start; mark the store unhealthy when it changes at run time
)

// storeHealth is what the probe reports to: the server's health and
// metrics. *server.Server and *server.Metrics implement it between them
// (see probeTarget).
type storeHealth interface {
	SetStoreHealthy(ok bool)
	StoreDataLost()
	SetStoreEvictable(evictable bool)
}

// storeProbe checks the shared Redis every period and reports what it sees:
//
//   - reachable and writable: a PING and a SET of a short-lived probe key,
//     so that a Redis that refuses writes (OOM under noeviction, a replica
//     after a failover gone wrong) is unhealthy, not SERVING;
//   - not lost: an epoch key this fleet writes once and reads back; when it
//     is gone or changed, the Redis lost its data (restarted empty, flushed,
//     failed over to an empty replica). The loss is logged as an error,
//     metered (resilience_store_data_loss_total) and handed to onDataLoss
//     (which re-reads the breakers this replica knew and emits their
//     events); a new epoch is then written;
//   - configured so that limiter and breaker keys are never evicted:
//     maxmemory-policy must be noeviction (every other policy evicts keys
//     with a TTL, which limiter and breaker keys have), checked at start-up
//     and every policyEvery on every master.
//
// Create it with its fields set; Run owns its goroutine-free loop and
// returns when ctx ends.
type storeProbe struct {
	client     redis.UniversalClient
	prefix     string // the Redis key prefix
	health     storeHealth
	log        *slog.Logger
	every      time.Duration
	eviction   string                // EvictionWarn or EvictionRefuse
	onDataLoss func(context.Context) // may be nil

	mu          sync.Mutex // protects the fields below
	epoch       string     // the epoch this replica last saw; "" before the first read
	policyErr   error      // the last policy problem found, nil when fine
	lastPolicy  time.Time
	policyEvery time.Duration
}

// probeTimeout bounds each probe round's Redis calls.
const probeTimeout = 250 * time.Millisecond

func (p *storeProbe) epochKey() string { return p.prefix + "epoch" }
func (p *storeProbe) probeKey() string { return p.prefix + "probe" }

// Run probes until ctx is done.
func (p *storeProbe) Run(ctx context.Context) {
	t := time.NewTicker(p.every)
	defer t.Stop()
	healthy := true
	for {
		err := p.round(ctx)
		if ctx.Err() != nil {
			return
		}
		if ok := err == nil; ok != healthy {
			healthy = ok
			p.health.SetStoreHealthy(ok)
			if ok {
				p.log.Info("shared store reachable and writable again")
			} else {
				p.log.Warn("shared store unhealthy; answering by each policy's on_store_failure", "error", err.Error())
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// round makes one probe round. Its error says why the store is unhealthy.
func (p *storeProbe) round(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if err := p.client.Set(pctx, p.probeKey(), time.Now().UnixMilli(), time.Minute).Err(); err != nil {
		if strings.HasPrefix(err.Error(), "OOM") {
			return fmt.Errorf("the store refuses writes (Redis maxmemory reached under noeviction): %w", err)
		}
		return fmt.Errorf("the store is unreachable or refusing writes: %w", err)
	}
	if err := p.checkEpoch(pctx); err != nil {
		return err
	}
	p.mu.Lock()
	due := p.lastPolicy.IsZero() || time.Since(p.lastPolicy) >= p.policyEveryOrDefault()
	p.mu.Unlock()
	if due {
		if err := p.CheckPolicy(pctx); err != nil && p.eviction == EvictionRefuse {
			return err
		}
	}
	if p.eviction == EvictionRefuse {
		// Between checks the store stays unhealthy for the problem the last
		// one found, until a check finds it gone.
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.policyErr
	}
	return nil
}

func (p *storeProbe) policyEveryOrDefault() time.Duration {
	if p.policyEvery > 0 {
		return p.policyEvery
	}
	return time.Minute
}

// checkEpoch reads the epoch key, writing one when there is none, and
// reports a loss when it differs from the one seen before.
func (p *storeProbe) checkEpoch(ctx context.Context) error {
	cur, err := p.client.Get(ctx, p.epochKey()).Result()
	if errors.Is(err, redis.Nil) {
		fresh := newEpoch()
		if err := p.client.SetNX(ctx, p.epochKey(), fresh, 0).Err(); err != nil {
			return fmt.Errorf("cannot write the store epoch: %w", err)
		}
		if cur, err = p.client.Get(ctx, p.epochKey()).Result(); err != nil {
			return fmt.Errorf("cannot read the store epoch: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("cannot read the store epoch: %w", err)
	}
	p.mu.Lock()
	prev := p.epoch
	p.epoch = cur
	p.mu.Unlock()
	if prev == "" || prev == cur {
		return nil
	}
	p.log.Error("the shared store lost its data (its epoch key is gone or changed): "+
		"rate limits start again from full buckets and breakers from CLOSED; "+
		"breaker events are emitted for the breakers this replica knew",
		"previous_epoch", prev, "epoch", cur)
	p.health.StoreDataLost()
	if p.onDataLoss != nil {
		p.onDataLoss(context.WithoutCancel(ctx))
	}
	return nil
}

func newEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// CheckPolicy reads maxmemory-policy on every master and reports an error
// when one may evict keys (anything but noeviction with a maxmemory set),
// logging it as an error either way; a Redis that does not allow CONFIG GET
// (managed services rename it) is logged as a warning and not refused.
func (p *storeProbe) CheckPolicy(ctx context.Context) error {
	var (
		mu       sync.Mutex
		problems []string
		unknown  []string
	)
	check := func(ctx context.Context, c *redis.Client) error {
		vals, err := c.ConfigGet(ctx, "maxmemory*").Result()
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			unknown = append(unknown, fmt.Sprintf("%s: %v", c.Options().Addr, err))
			return nil
		}
		policy, maxmem := vals["maxmemory-policy"], vals["maxmemory"]
		if policy != "noeviction" && maxmem != "0" && maxmem != "" {
			problems = append(problems, fmt.Sprintf("%s has maxmemory-policy %s with maxmemory %s", c.Options().Addr, policy, maxmem))
		} else if policy != "noeviction" {
			// No maxmemory: nothing is evicted today, but a later
			// CONFIG SET maxmemory would start evicting at once.
			p.log.Warn("Redis has no maxmemory, but maxmemory-policy is not noeviction: set it to noeviction before setting maxmemory",
				"addr", c.Options().Addr, "maxmemory_policy", policy)
		}
		return nil
	}
	var err error
	switch c := p.client.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, check)
	case *redis.Client:
		err = check(ctx, c)
	}
	p.mu.Lock()
	p.lastPolicy = time.Now()
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("cannot check maxmemory-policy: %w", err)
	}
	if len(unknown) > 0 {
		p.log.Warn("cannot read maxmemory-policy (CONFIG GET refused); make sure it is noeviction, or limits may be evicted and over-admit",
			"errors", strings.Join(unknown, "; "))
	}
	evictable := len(problems) > 0
	p.health.SetStoreEvictable(evictable)
	if !evictable {
		p.mu.Lock()
		p.policyErr = nil
		p.mu.Unlock()
		return nil
	}
	perr := fmt.Errorf("the limits Redis may evict rate-limit and breaker keys (%s): evicted buckets over-admit and evicted breakers close; "+
		"set maxmemory-policy noeviction on the limits Redis and give the cache its own Redis with --cache-redis-url", strings.Join(problems, "; "))
	p.log.Error(perr.Error(), "eviction", p.eviction)
	p.mu.Lock()
	p.policyErr = perr
	p.mu.Unlock()
	return perr
}
