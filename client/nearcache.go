package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/topdeck/resilience/cache"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/internal/repeat"
)

// Defaults of the near cache.
const (
	// DefaultNearCacheEntries bounds the entries of the near cache unless
	// WithNearCache says otherwise.
	DefaultNearCacheEntries = cache.DefaultNearMaxEntries
	// DefaultNearCacheBytes bounds the bytes of the near cache (keys,
	// values and about 128 bytes per entry) unless WithNearCache says
	// otherwise.
	DefaultNearCacheBytes = cache.DefaultNearMaxBytes
	// nearRetryMin and nearRetryMax bound the pause (doubling, jittered)
	// before Run watches again after the stream broke.
	nearRetryMin = 100 * time.Millisecond
	nearRetryMax = 5 * time.Second
)

// nearOptions configure the near cache of a Client's Cache.
type nearOptions struct {
	off        bool
	maxEntries int
	maxBytes   int64
}

func (o nearOptions) newNear() *cache.Near {
	entries, size := o.maxEntries, o.maxBytes
	if entries <= 0 {
		entries = DefaultNearCacheEntries
	}
	if size <= 0 {
		size = DefaultNearCacheBytes
	}
	n, _ := cache.NewNear(cache.WithNearMaxEntries(entries), cache.WithNearMaxBytes(size)) // both bounds are positive: no error
	return n
}

// WithNearCache bounds the near cache of the Client's Cache to maxEntries
// entries and maxBytes bytes (keys, values and about 128 bytes per entry),
// least recently used out first (default DefaultNearCacheEntries and
// DefaultNearCacheBytes; a value <= 0 means its default).
func WithNearCache(maxEntries int, maxBytes int64) Option {
	return func(o *options) {
		o.near = nearOptions{maxEntries: maxEntries, maxBytes: maxBytes}
	}
}

// WithoutNearCache turns the near cache of the Client's Cache off: every
// Get asks the service, and Cache.Run returns at once.
func WithoutNearCache() Option { return func(o *options) { o.near = nearOptions{off: true} } }

// GetOption configures one Cache.Get (and GetJSON, GetOrLoad).
type GetOption func(*getOptions)

type getOptions struct{ noNear bool }

// NoNearCache makes a Get ask the service, neither reading nor filling the
// near cache.
func NoNearCache() GetOption { return noNearCache }

func noNearCache(o *getOptions) { o.noNear = true }

// errNearOff is Run's answer with WithoutNearCache.
var errNearOff = errors.New("client: the near cache is off (WithoutNearCache)")

// errRunning is Run's answer while another Run runs.
var errRunning = errors.New("client: Cache.Run is already running")

// Run keeps the near cache until ctx ends, then empties it and returns nil.
// Without Run, Gets never use the near cache.
//
// Run holds one WatchInvalidations stream to the service and answers Gets
// from memory only while that stream is in place (from its first RESYNC
// message on): an entry is dropped when the stream brings its invalidation,
// which every replica sends for a Set, Delete or DeletePattern through any
// of them, and when the TTL the service reported for it has passed (counted
// from when the Get was sent, so it never outlives the stored value). When
// the stream breaks (the replica's own subscription broke, it shut down, or
// this process fell behind), the near cache empties and every Get asks the
// service until the stream is back: Run watches again after a pause that
// doubles from 100 ms to 5 s, jittered. A read that fills the near cache asks
// the service for a fresh read of the shared store, and is not kept when an
// invalidation of its key arrived while it was in flight. So once an
// invalidation has arrived, the value it replaced is never served; until
// then a Get may serve it (the staleness bound, measured in
// docs/benchmarks.md). Writes through this Cache drop their keys at once
// (and their invalidation, coming back on the stream, drops a copy read in
// between). Writes made around the service (redis-cli) are not seen until
// the TTL. Values the service did not find, or answered degraded, are not
// kept.
//
// Run returns an error at once with WithoutNearCache, or while another Run
// of this Cache runs. The caller owns the goroutine that calls Run and
// should wait for it.
func (k *Cache) Run(ctx context.Context) error {
	if k.near == nil {
		return errNearOff
	}
	if !k.running.CompareAndSwap(false, true) {
		return errRunning
	}
	defer k.running.Store(false)
	defer k.near.SetLive(false)
	pause := nearRetryMin
	repeat.Run(ctx, 0, func() time.Duration { return pause/2 + rand.N(pause/2+1) }, func() {
		if k.watch(ctx) {
			pause = nearRetryMin // it was in place: try again soon
		} else {
			pause = min(2*pause, nearRetryMax)
		}
	})
	return nil
}

// watch holds one invalidation stream until it breaks or ctx ends, and
// reports whether it was in place (its RESYNC arrived). The near cache
// answers only in between.
func (k *Cache) watch(ctx context.Context) (wasLive bool) {
	ctx, cancel := context.WithCancel(outgoing(ctx))
	defer cancel()
	stream, err := k.c.cs.WatchInvalidations(ctx, &resiliencev1.WatchInvalidationsRequest{})
	if err != nil {
		return false
	}
	defer k.near.SetLive(false)
	for {
		resp, err := stream.Recv()
		if err != nil {
			return wasLive
		}
		inv := resp.GetInvalidation()
		switch inv.GetKind() {
		case resiliencev1.InvalidationKind_INVALIDATION_KIND_RESYNC:
			k.near.SetLive(true)
			wasLive = true
		case resiliencev1.InvalidationKind_INVALIDATION_KIND_SET,
			resiliencev1.InvalidationKind_INVALIDATION_KIND_DELETE,
			resiliencev1.InvalidationKind_INVALIDATION_KIND_EXPIRED:
			k.near.Invalidate(cache.Invalidation{Kind: cache.InvalidateDelete, Keys: inv.GetKeys()})
		case resiliencev1.InvalidationKind_INVALIDATION_KIND_DELETE_PATTERN:
			k.near.Invalidate(cache.Invalidation{Kind: cache.InvalidatePattern, Pattern: inv.GetPattern()})
		default: // a kind this SDK does not know: drop everything
			k.near.Invalidate(cache.Invalidation{Kind: cache.InvalidateAll})
		}
	}
}

// forget drops from the near cache what a write of this process changed.
func (k *Cache) forget(inv cache.Invalidation) {
	if k.near != nil {
		k.near.Invalidate(inv)
	}
}

// NearCacheLive reports whether the near cache answers Gets now: Run runs
// and its invalidation stream is in place.
func (k *Cache) NearCacheLive() bool { return k.near != nil && k.near.Live() }

// NearCacheLen returns the number of entries the near cache holds.
func (k *Cache) NearCacheLen() int {
	if k.near == nil {
		return 0
	}
	return k.near.Len()
}
