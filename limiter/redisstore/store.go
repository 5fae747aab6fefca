package redisstore

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/topdeck/resilience/limiter"
)

//go:embed gcra.lua
var gcraSource string

// gcraScript makes one decision; see gcra.lua.
var gcraScript = redis.NewScript(gcraSource)

// DefaultPrefix is the default key prefix.
const DefaultPrefix = "resilience:"

// Store is a limiter.Store backed by Redis. Create one with New; the zero
// value is not usable. A Store is safe for concurrent use; it holds no state
// besides its options.
type Store struct {
	client redis.Scripter
	prefix string
	now    func() time.Time // nil in production: Redis TIME is the clock
}

var _ limiter.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithPrefix sets the prefix of every key (default DefaultPrefix). It must
// not contain '{' or '}'.
func WithPrefix(prefix string) Option {
	return func(s *Store) { s.prefix = prefix }
}

// WithClockForTesting makes the store send now() to the script instead of
// letting it read Redis TIME.
//
// FOR TESTS ONLY. In production the only clock is Redis TIME, which every
// replica shares; with this option each replica's own clock decides, and
// replicas whose clocks differ admit more than the limit. It exists so that
// the conformance suite can drive the Redis store with a manual clock.
func WithClockForTesting(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// New returns a Store using client, which may be a *redis.Client,
// *redis.ClusterClient, *redis.Ring or any redis.UniversalClient. The caller
// owns the client and closes it.
func New(client redis.Scripter, opts ...Option) *Store {
	s := &Store{client: client, prefix: DefaultPrefix}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// Key returns the Redis key of key's bucket: <prefix>rl:{<key>}.
func (s *Store) Key(key string) string {
	return s.prefix + "rl:{" + key + "}"
}

// Take implements limiter.Store.
func (s *Store) Take(ctx context.Context, key string, lim limiter.Limit, cost int64, maxWait time.Duration) (limiter.Result, error) {
	if err := limiter.ValidateCall(lim, cost, maxWait); err != nil {
		return limiter.Result{}, err
	}
	return s.run(ctx, "take", key, lim, cost, maxWait)
}

// Peek implements limiter.Store.
func (s *Store) Peek(ctx context.Context, key string, lim limiter.Limit, cost int64) (limiter.Result, error) {
	if err := limiter.ValidateCall(lim, cost, 0); err != nil {
		return limiter.Result{}, err
	}
	return s.run(ctx, "peek", key, lim, cost, 0)
}

func (s *Store) run(ctx context.Context, mode, key string, lim limiter.Limit, cost int64, maxWait time.Duration) (limiter.Result, error) {
	keys, args := s.scriptArgs(mode, key, lim, cost, maxWait)
	v, err := gcraScript.Run(ctx, s.client, keys, args...).Result()
	if err != nil {
		return limiter.Result{}, fmt.Errorf("redisstore: %s %q: %w: %w", mode, key, limiter.ErrStoreUnavailable, err)
	}
	res, err := decodeResult(v)
	if err != nil {
		return limiter.Result{}, fmt.Errorf("redisstore: %s %q: %w: %w", mode, key, limiter.ErrStoreUnavailable, err)
	}
	return res, nil
}

func (s *Store) scriptArgs(mode, key string, lim limiter.Limit, cost int64, maxWait time.Duration) ([]string, []any) {
	p := lim.Params()
	now := ""
	if s.now != nil {
		now = strconv.FormatInt(s.now().UnixMicro(), 10)
	}
	return []string{s.Key(key)}, []any{p.M, p.W, p.B, cost, int64(maxWait / time.Microsecond), mode, now}
}

// decodeResult decodes the script's reply {allowed, remaining, retry_after_us,
// reset_after_us, wait_us}.
func decodeResult(v any) (limiter.Result, error) {
	vals, ok := v.([]any)
	if !ok {
		return limiter.Result{}, fmt.Errorf("malformed reply: got %T, want an array", v)
	}
	if len(vals) != 5 {
		return limiter.Result{}, fmt.Errorf("malformed reply: got %d elements, want 5", len(vals))
	}
	var n [5]int64
	for i, x := range vals {
		xi, ok := x.(int64)
		if !ok {
			return limiter.Result{}, fmt.Errorf("malformed reply: element %d is %T, want an integer", i, x)
		}
		if xi < 0 {
			return limiter.Result{}, fmt.Errorf("malformed reply: element %d is %d, want >= 0", i, xi)
		}
		n[i] = xi
	}
	if n[0] > 1 {
		return limiter.Result{}, fmt.Errorf("malformed reply: allowed is %d, want 0 or 1", n[0])
	}
	return limiter.Result{
		Allowed:    n[0] == 1,
		Remaining:  n[1],
		RetryAfter: time.Duration(n[2]) * time.Microsecond,
		ResetAfter: time.Duration(n[3]) * time.Microsecond,
		Wait:       time.Duration(n[4]) * time.Microsecond,
	}, nil
}
