package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

// callFunc makes one call and says what the answer was: bit i of the mask
// set counts one for the target's outcomes[i]. A callFunc belongs to one
// caller goroutine.
type callFunc func(ctx context.Context) (outcomes uint8, err error)

// callerFactory returns the callFunc of caller number worker, which uses conn.
// It is called once per caller, before the run starts.
type callerFactory func(conn *grpc.ClientConn, worker int) callFunc

// target is one RPC that resilbench can load.
type target struct {
	name string
	// outcomes names the counters of what the answers said (at most 8).
	outcomes []string
	// prefill, when set, prepares the server before the run (not measured).
	prefill func(ctx context.Context, cfg config, conns []*grpc.ClientConn) error
	// build prepares what the callers share (requests, values) and returns
	// their factory.
	build func(cfg config) callerFactory
}

// Outcome bits shared by the targets.
const (
	bit0 uint8 = 1 << iota
	bit1
	bit2
)

// targets lists every RPC, in the order of the usage text.
var targets = []*target{
	{name: "health", outcomes: []string{"serving", "not_serving"}, build: buildHealth},
	{name: "acquire", outcomes: acquireOutcomes, build: buildAcquire(false)},
	{name: "acquire-denied", outcomes: acquireOutcomes, build: buildAcquireDenied},
	{name: "acquire-breaker", outcomes: acquireOutcomes, build: buildAcquire(true)},
	{name: "cache-get", outcomes: []string{"hit", "miss", "degraded"}, prefill: prefillCache, build: buildCacheGet},
	{name: "cache-set", outcomes: []string{"stored", "not_stored", "degraded"}, build: buildCacheSet},
	{name: "envoy", outcomes: []string{"ok", "over_limit"}, build: buildEnvoy},
	{name: "redis-get", outcomes: []string{"hit", "miss"}, prefill: prefillRedis, build: buildRedisGet},
	{name: "redis-set", outcomes: []string{"stored"}, build: buildRedisSet},
}

var acquireOutcomes = []string{"allowed", "denied", "degraded"}

// lookupTarget returns the target named name, or nil.
func lookupTarget(name string) *target {
	for _, t := range targets {
		if t.name == name {
			return t
		}
	}
	return nil
}

// targetNames lists the names of every target.
func targetNames() []string {
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.name
	}
	return names
}

// Limits of the Acquire targets.
var (
	// hugeLimit admits everything: 10^9 calls per second, burst 10^9.
	hugeLimit = &resiliencev1.RateLimit{MaxCalls: 1_000_000_000, TimeWindow: durationpb.New(time.Second)}
	// tinyLimit denies nearly everything: 1 call per hour, burst 1.
	tinyLimit = &resiliencev1.RateLimit{MaxCalls: 1, TimeWindow: durationpb.New(time.Hour), Burst: 1}
)

// keyName returns the i-th key of a kind ("acquire", "breaker", "cache").
func keyName(cfg config, kind string, i int) string {
	return cfg.keyPrefix + kind + "/" + strconv.Itoa(i)
}

func buildHealth(config) callerFactory {
	req := &healthpb.HealthCheckRequest{}
	return func(conn *grpc.ClientConn, _ int) callFunc {
		c := healthpb.NewHealthClient(conn)
		return func(ctx context.Context) (uint8, error) {
			resp, err := c.Check(ctx, req)
			if err != nil {
				return 0, err
			}
			if resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
				return bit0, nil
			}
			return bit1, nil
		}
	}
}

// cycle returns the callFunc of caller worker: it sends reqs[worker],
// reqs[worker+1], ... in turn (wrapping around) through send, which makes
// the call and maps its answer to outcome bits. Outcome bits are ignored
// when send returns an error.
func cycle[Req any](reqs []Req, worker int, send func(context.Context, Req) (uint8, error)) callFunc {
	next := worker % len(reqs)
	return func(ctx context.Context) (uint8, error) {
		req := reqs[next]
		next = (next + 1) % len(reqs)
		m, err := send(ctx, req)
		if err != nil {
			return 0, err
		}
		return m, nil
	}
}

// outcomeBits maps an answer to the usual outcomes: bit0 when ok, bit1
// otherwise, plus bit2 when degraded.
func outcomeBits(ok, degraded bool) uint8 {
	m := bit1
	if ok {
		m = bit0
	}
	if degraded {
		m |= bit2
	}
	return m
}

// acquireOutcome maps an AcquireResponse to acquireOutcomes.
func acquireOutcome(resp *resiliencev1.AcquireResponse) uint8 {
	return outcomeBits(resp.GetAllowed(), resp.GetDegraded())
}

// buildAcquire spreads admitted Acquire calls over cfg.keys keys and, with
// breaker, as many breakers. Caller w starts at key w and moves one key on
// per call.
func buildAcquire(breaker bool) func(cfg config) callerFactory {
	return func(cfg config) callerFactory {
		reqs := make([]*resiliencev1.AcquireRequest, cfg.keys)
		for i := range reqs {
			reqs[i] = &resiliencev1.AcquireRequest{Key: keyName(cfg, "acquire", i), Limit: hugeLimit}
			if breaker {
				reqs[i].Breaker = keyName(cfg, "breaker", i)
			}
		}
		return func(conn *grpc.ClientConn, worker int) callFunc {
			c := resiliencev1.NewResilienceServiceClient(conn)
			return cycle(reqs, worker, func(ctx context.Context, req *resiliencev1.AcquireRequest) (uint8, error) {
				resp, err := c.Acquire(ctx, req)
				return acquireOutcome(resp), err
			})
		}
	}
}

// buildAcquireDenied sends every call to one key limited to one call an
// hour: all but (at most) the first are denied.
func buildAcquireDenied(cfg config) callerFactory {
	reqs := []*resiliencev1.AcquireRequest{{Key: cfg.keyPrefix + "denied", Limit: tinyLimit}}
	return func(conn *grpc.ClientConn, worker int) callFunc {
		c := resiliencev1.NewResilienceServiceClient(conn)
		return cycle(reqs, worker, func(ctx context.Context, req *resiliencev1.AcquireRequest) (uint8, error) {
			resp, err := c.Acquire(ctx, req)
			return acquireOutcome(resp), err
		})
	}
}

// cacheTTL is how long the values written by cache-get's prefill and by
// cache-set live: past the end of the run, then they clean themselves up.
func cacheTTL(cfg config) *durationpb.Duration {
	return durationpb.New(cfg.warmup + cfg.duration + 5*time.Minute)
}

// prefillCache sets cfg.keys cache keys (as cache-set names them) so that
// cache-get finds them, with up to cfg.concurrency calls at once over every
// connection. Any call error fails the prefill; values the server could not
// store (degraded) show later as misses.
func prefillCache(ctx context.Context, cfg config, conns []*grpc.ClientConn) error {
	value := bytes.Repeat([]byte{'x'}, cfg.valueSize)
	ttl := cacheTTL(cfg)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.concurrency)
	for i := range cfg.keys {
		c := resiliencev1.NewCacheServiceClient(conns[i%len(conns)])
		req := &resiliencev1.SetRequest{Key: keyName(cfg, "cache", i), Value: value, Ttl: ttl}
		g.Go(func() error {
			cctx, cancel := context.WithTimeout(gctx, cfg.timeout)
			defer cancel()
			if _, err := c.Set(cctx, req); err != nil {
				return fmt.Errorf("prefill: Set %q: %w", req.Key, err)
			}
			return nil
		})
	}
	return g.Wait()
}

func buildCacheGet(cfg config) callerFactory {
	reqs := make([]*resiliencev1.GetRequest, cfg.keys)
	for i := range reqs {
		reqs[i] = &resiliencev1.GetRequest{Key: keyName(cfg, "cache", i)}
	}
	return func(conn *grpc.ClientConn, worker int) callFunc {
		c := resiliencev1.NewCacheServiceClient(conn)
		return cycle(reqs, worker, func(ctx context.Context, req *resiliencev1.GetRequest) (uint8, error) {
			resp, err := c.Get(ctx, req)
			return outcomeBits(resp.GetFound(), resp.GetDegraded()), err
		})
	}
}

func buildCacheSet(cfg config) callerFactory {
	value := bytes.Repeat([]byte{'x'}, cfg.valueSize)
	ttl := cacheTTL(cfg)
	reqs := make([]*resiliencev1.SetRequest, cfg.keys)
	for i := range reqs {
		reqs[i] = &resiliencev1.SetRequest{Key: keyName(cfg, "cache", i), Value: value, Ttl: ttl}
	}
	return func(conn *grpc.ClientConn, worker int) callFunc {
		c := resiliencev1.NewCacheServiceClient(conn)
		return cycle(reqs, worker, func(ctx context.Context, req *resiliencev1.SetRequest) (uint8, error) {
			resp, err := c.Set(ctx, req)
			return outcomeBits(resp.GetStored(), resp.GetDegraded()), err
		})
	}
}

// The redis-get and redis-set targets call Redis directly with go-redis (no
// resilienced in between): the baseline of the cache targets. Their keys
// live under "resilbench-direct:", apart from anything the service writes.

// newRedisClient returns a client for cfg.redisAddr sized for the callers.
func newRedisClient(cfg config) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: cfg.redisAddr, PoolSize: cfg.concurrency, MaxRetries: -1})
}

func directKey(cfg config, i int) string { return "resilbench-direct:" + keyName(cfg, "cache", i) }

// directKeys lists the keys of the direct Redis targets.
func directKeys(cfg config) []string {
	keys := make([]string, cfg.keys)
	for i := range keys {
		keys[i] = directKey(cfg, i)
	}
	return keys
}

func prefillRedis(ctx context.Context, cfg config, _ []*grpc.ClientConn) error {
	c := newRedisClient(cfg)
	defer c.Close()
	pipe := c.Pipeline()
	value := bytes.Repeat([]byte("v"), cfg.valueSize)
	for i := 0; i < cfg.keys; i++ {
		pipe.Set(ctx, directKey(cfg, i), value, cfg.warmup+cfg.duration+5*time.Minute)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("prefill redis %s: %w", cfg.redisAddr, err)
	}
	return nil
}

func buildRedisGet(cfg config) callerFactory {
	c := newRedisClient(cfg) // shared by the callers, closed with the process
	keys := directKeys(cfg)
	return func(_ *grpc.ClientConn, worker int) callFunc {
		return cycle(keys, worker, func(ctx context.Context, key string) (uint8, error) {
			err := c.Get(ctx, key).Err()
			if errors.Is(err, redis.Nil) {
				return bit1, nil
			}
			return bit0, err
		})
	}
}

func buildRedisSet(cfg config) callerFactory {
	c := newRedisClient(cfg)
	keys := directKeys(cfg)
	value := bytes.Repeat([]byte("v"), cfg.valueSize)
	ttl := cfg.warmup + cfg.duration + 5*time.Minute
	return func(_ *grpc.ClientConn, worker int) callFunc {
		return cycle(keys, worker, func(ctx context.Context, key string) (uint8, error) {
			return bit0, c.Set(ctx, key, value, ttl).Err()
		})
	}
}

// buildEnvoy sends Envoy's ShouldRateLimit for domain "resilbench" (which the
// server's configuration must define; see scripts/bench) with one
// descriptor {client: <key>} spread over cfg.keys values.
func buildEnvoy(cfg config) callerFactory {
	reqs := make([]*ratelimitv3.RateLimitRequest, cfg.keys)
	for i := range reqs {
		reqs[i] = &ratelimitv3.RateLimitRequest{
			Domain: "resilbench",
			Descriptors: []*commonv3.RateLimitDescriptor{{
				Entries: []*commonv3.RateLimitDescriptor_Entry{{Key: "client", Value: keyName(cfg, "envoy", i)}},
			}},
		}
	}
	return func(conn *grpc.ClientConn, worker int) callFunc {
		c := ratelimitv3.NewRateLimitServiceClient(conn)
		return cycle(reqs, worker, func(ctx context.Context, req *ratelimitv3.RateLimitRequest) (uint8, error) {
			resp, err := c.ShouldRateLimit(ctx, req)
			return outcomeBits(resp.GetOverallCode() != ratelimitv3.RateLimitResponse_OVER_LIMIT, false), err
		})
	}
}
