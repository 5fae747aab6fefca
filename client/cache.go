package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/topdeck/resilience/cache"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

// Cache is the client of the shared cache. Values are opaque bytes;
// GetJSON, SetJSON and GetOrLoad store JSON.
//
// It has a near cache: while Run runs, it keeps the entries it read in
// process memory (bounded, see WithNearCache) and answers Gets from there,
// dropping an entry when the service streams its invalidation (a Set,
// Delete or DeletePattern through any replica) and when the TTL the service
// reported has passed. See Run for the guarantees; NoNearCache opts a call
// out, WithoutNearCache the whole Cache.
//
// Get it from Client.Cache; the zero value is not usable. A Cache is safe for
// concurrent use.
type Cache struct {
	c      *Client
	flight singleflight.Group
	near   *cache.Near // nil: WithoutNearCache
	// running is set while Run runs.
	running atomic.Bool
}

func newCache(c *Client) *Cache {
	k := &Cache{c: c}
	if !c.o.near.off {
		k.near = c.o.near.newNear()
	}
	return k
}

// Cache returns the Client's cache.
func (c *Client) Cache() *Cache { return c.cache }

// Item is the answer of Get.
type Item struct {
	// Found says whether the key holds a value.
	Found bool
	// Value is the value (nil when not found).
	Value []byte
	// TTL is the time left to live (0 when not found or without expiry).
	TTL time.Duration
	// Degraded is true when the service could not read its shared store:
	// Found is then false.
	Degraded bool
}

// Stats are the cache's fleet-wide statistics.
type Stats struct {
	Hits, Misses, Sets, Deletes, Errors, Keys int64
	// HitRatio is Hits / (Hits + Misses), 0 without Gets.
	HitRatio float64
	// Degraded is true when the counts are one replica's only.
	Degraded bool
}

// Get reads key: from the near cache when it holds the key (see Run), from
// the service otherwise. A miss is Item{Found: false}, not an error; so is a
// read the service could not make (Degraded). Errors: the context's, a gRPC
// status from the service (INVALID_ARGUMENT for a bad key), or an error
// matching ErrServiceUnavailable when the service cannot be reached (the
// cache has no local fallback). Item.Value belongs to the caller.
func (k *Cache) Get(ctx context.Context, key string, opts ...GetOption) (Item, error) {
	var o getOptions
	for _, opt := range opts {
		opt(&o)
	}
	var fill *cache.Fill
	if k.near != nil && !o.noNear {
		now := k.c.o.now()
		if e, ok := k.near.Get(key, now); ok {
			return Item{Found: true, Value: bytes.Clone(e.Value), TTL: e.TTL}, nil
		}
		fill = k.near.Begin(key, now) // nil unless the near cache is live
	}
	// A read that may fill the near cache reads the shared store itself:
	// a replica's memory may not have the invalidation we already have.
	req := &resiliencev1.GetRequest{Key: key, Fresh: fill != nil}
	resp, err := invokeFor(ctx, k.c, 0, k.c.cs.Get, req)
	if err != nil {
		k.near.Abandon(fill)
		return Item{}, err
	}
	it := Item{Found: resp.GetFound(), Degraded: resp.GetDegraded(), TTL: resp.GetTtl().AsDuration()}
	if !it.Found || it.Degraded {
		k.near.Abandon(fill)
		return Item{Found: false, Degraded: it.Degraded}, nil
	}
	it.Value = resp.GetValue()
	if fill != nil {
		k.near.Commit(fill, cache.Entry{Value: bytes.Clone(it.Value), TTL: it.TTL})
	}
	return it, nil
}

// Set writes value under key for ttl (0: the server's default TTL). It
// returns an error matching ErrDegraded when the service could not write its
// shared store; other errors as Get.
func (k *Cache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	req := &resiliencev1.SetRequest{Key: key, Value: value}
	if ttl != 0 {
		req.Ttl = durationpb.New(ttl)
	}
	resp, err := invokeFor(ctx, k.c, 0, k.c.cs.Set, req)
	// Whatever the answer (the write may have happened), this process's
	// next Get reads it from the service.
	k.forget(cache.Invalidation{Kind: cache.InvalidateSet, Keys: []string{key}})
	if err != nil {
		return err
	}
	if resp.GetDegraded() || !resp.GetStored() {
		return fmt.Errorf("%w: %q not stored", ErrDegraded, key)
	}
	return nil
}

// Delete removes keys and returns how many existed. Errors: as Set.
func (k *Cache) Delete(ctx context.Context, keys ...string) (int64, error) {
	resp, err := invokeFor(ctx, k.c, 0, k.c.cs.Delete, &resiliencev1.DeleteRequest{Keys: keys})
	k.forget(cache.Invalidation{Kind: cache.InvalidateDelete, Keys: keys})
	return deleted(resp, err, "delete")
}

// DeletePattern removes every key matching the glob pattern (`*`, `?`,
// `[...]`, `\` escapes) and returns how many. Errors: as Set.
func (k *Cache) DeletePattern(ctx context.Context, pattern string) (int64, error) {
	resp, err := invokeFor(ctx, k.c, 0, k.c.cs.DeletePattern, &resiliencev1.DeletePatternRequest{Pattern: pattern})
	k.forget(cache.Invalidation{Kind: cache.InvalidatePattern, Pattern: pattern})
	return deleted(resp, err, "delete pattern")
}

// deleted is what Delete and DeletePattern return for the answer resp and
// the error err of their RPC: the count, and an error matching ErrDegraded
// (naming op) when the service answered without the shared store.
func deleted(resp interface {
	GetDeleted() int64
	GetDegraded() bool
}, err error, op string) (int64, error) {
	if err != nil {
		return 0, err
	}
	if resp.GetDegraded() {
		return resp.GetDeleted(), fmt.Errorf("%w: %s", ErrDegraded, op)
	}
	return resp.GetDeleted(), nil
}

// Stats returns the fleet-wide statistics. Errors: as Get.
func (k *Cache) Stats(ctx context.Context) (Stats, error) {
	resp, err := invokeFor(ctx, k.c, 0, k.c.cs.GetStats, &resiliencev1.GetStatsRequest{})
	if err != nil {
		return Stats{}, err
	}
	return Stats{
		Hits: resp.GetHits(), Misses: resp.GetMisses(), Sets: resp.GetSets(),
		Deletes: resp.GetDeletes(), Errors: resp.GetErrors(), Keys: resp.GetKeys(),
		HitRatio: resp.GetHitRatio(), Degraded: resp.GetDegraded(),
	}, nil
}

// GetJSON reads key (with opts, as Cache.Get) and decodes its JSON value
// into a T. found is false on a miss (degraded reads included). A value that
// is not a valid JSON T is an error. Other errors: as Cache.Get.
func GetJSON[T any](ctx context.Context, k *Cache, key string, opts ...GetOption) (v T, found bool, err error) {
	it, err := k.Get(ctx, key, opts...)
	if err != nil || !it.Found {
		return v, false, err
	}
	if err := json.Unmarshal(it.Value, &v); err != nil {
		return v, false, fmt.Errorf("client: cache value of %q is not a JSON %T: %w", key, v, err)
	}
	return v, true, nil
}

// SetJSON writes v as JSON under key for ttl. Errors: as Cache.Set, or the
// JSON encoder's.
func SetJSON[T any](ctx context.Context, k *Cache, key string, v T, ttl time.Duration) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("client: cannot encode cache value of %q: %w", key, err)
	}
	return k.Set(ctx, key, b, ttl)
}

// GetOrLoad returns the JSON T cached under key, or calls load, caches its
// value for ttl and returns it.
//
// Concurrent GetOrLoad calls for the same key in this process share one load
// (single flight); each waits no longer than its own context. The load runs
// with the context of the call that started it; when that context ends
// early, the others load for themselves.
//
// The cache never stands between the caller and its value: when the service
// answers degraded, cannot be reached, or fails, load runs directly, and its
// value is cached afterwards, best effort, only when the service answered.
// A cached value that is not a valid JSON T is loaded again. opts apply to
// the read (as Cache.Get). Errors: load's, or the context's.
func GetOrLoad[T any](ctx context.Context, k *Cache, key string, ttl time.Duration, load func(ctx context.Context) (T, error), opts ...GetOption) (T, error) {
	var zero T
	it, err := k.Get(ctx, key, opts...)
	if cerr := ctx.Err(); cerr != nil {
		return zero, cerr
	}
	if err == nil && it.Found {
		var v T
		if json.Unmarshal(it.Value, &v) == nil {
			return v, nil
		}
	}
	// Cache the loaded value when the service answered (even degraded: the
	// store may be back), not when it is unreachable or refused the key.
	store := err == nil
	for range 2 {
		ch := k.flight.DoChan(key, func() (any, error) {
			v, err := load(ctx)
			if err == nil && store {
				if b, jerr := json.Marshal(v); jerr == nil {
					_ = k.Set(context.WithoutCancel(ctx), key, b, ttl)
				}
			}
			return v, err
		})
		var res singleflight.Result
		select {
		case res = <-ch:
		case <-ctx.Done():
			return zero, ctx.Err()
		}
		if res.Err != nil {
			if isContextErr(res.Err) && ctx.Err() == nil {
				continue // the loader's caller went away; load for ourselves
			}
			return zero, res.Err
		}
		if v, ok := res.Val.(T); ok {
			return v, nil
		}
		break // another type was loaded under the same key
	}
	return load(ctx)
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
