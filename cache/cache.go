package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/topdeck/resilience/internal/storehealth"
)

// Limits and defaults of a Cache.
const (
	// MaxKeyBytes is the longest key a Cache accepts.
	MaxKeyBytes = 256
	// MaxPatternBytes is the longest DeletePattern pattern a Cache accepts.
	MaxPatternBytes = 1024
	// DefaultMaxValueBytes is the largest value a Cache stores unless
	// WithMaxValueBytes says otherwise (1 MiB).
	DefaultMaxValueBytes = 1 << 20
	// DefaultTTL is the expiry of a value Set with ttl 0 unless
	// WithDefaultTTL says otherwise: 5 minutes, the service's documented
	// default (config.DefaultCacheTTL is this value).
	DefaultTTL = 5 * time.Minute
	// MaxTTL is the longest expiry a Cache accepts, for Set's ttl and for the
	// default TTL: 10 years (of 365 days). Longer TTLs are refused, never
	// stored as "no expiry".
	MaxTTL = 10 * 365 * 24 * time.Hour
	// DefaultStoreTimeout bounds each Get, Set and Delete store call unless
	// WithStoreTimeout says otherwise.
	DefaultStoreTimeout = 500 * time.Millisecond
	// DefaultFlushInterval is how often Run flushes the statistics unless
	// WithFlushInterval says otherwise.
	DefaultFlushInterval = 250 * time.Millisecond
)

// Cache is the shared cache the server calls: it validates input, applies
// the default TTL, shares concurrent reads of one key, turns store failures
// into degraded results and counts fleet-wide statistics.
//
// Error contract of Get, Set, Delete and DeletePattern: the returned error is
// non-nil only for a bad argument (an *ArgumentError, errors.Is
// ErrInvalidArgument) or when the caller's ctx is done (ctx.Err()). A store
// failure is not an error: the result has Degraded set and Err holding the
// store error (wrapping ErrStoreUnavailable) for logging, and the failure is
// counted in Counters.Errors. A degraded Get reports not found; a degraded
// Set stored nothing.
//
// Statistics are counted in local atomics; Run flushes them to the store
// (when it implements StatsStore) every FlushInterval. Create a Cache with
// New; the zero value is not usable. A Cache is safe for concurrent use.
type Cache struct {
	store         Store
	stats         StatsStore
	defaultTTL    time.Duration // as configured by New; see limits
	maxValueBytes int           // as configured by New; see limits
	limits        atomic.Pointer[limits]
	storeTimeout  time.Duration
	flushInterval time.Duration
	onFlushError  func(error)
	source        string

	flights flights // concurrent Gets of one key share one store call
	// health skips the store while it is known to be down or hung, so that
	// a hung Redis costs the calls in flight one store timeout each, not
	// every call (see internal/storehealth).
	health        *storehealth.Tracker
	retryInterval time.Duration

	// feed is the store's invalidation feed (nil: it has none); near is the
	// memory layer (nil: none), which answers Gets while Run follows the
	// feed without a gap; watchers are the Watch channels.
	feed        Feed
	near        *Near
	nearSet     bool // WithMemoryLayer was given
	watchers    watchers
	feedRetry   time.Duration
	onFeedError func(error)

	pending struct{ hits, misses, sets, deletes, errors atomic.Int64 }
	// inflight is a batch taken from pending whose AddStats has not yet
	// succeeded; it is retried as is, with its Seq, so it counts once.
	inflight atomic.Pointer[StatsDelta]

	flushMu sync.Mutex // serialises Flush; protects seq
	seq     uint64
}

// limits are the settings SetLimits can change while the Cache is in use.
type limits struct {
	defaultTTL    time.Duration
	maxValueBytes int
}

// SetLimits replaces the default TTL and the largest value size (both > 0)
// for the Sets that start after it returns, for a configuration reload.
func (c *Cache) SetLimits(defaultTTL time.Duration, maxValueBytes int) error {
	switch {
	case defaultTTL <= 0:
		return &ArgumentError{Field: "default_ttl", Reason: fmt.Sprintf("default_ttl is %v, must be positive", defaultTTL)}
	case defaultTTL > MaxTTL:
		return &ArgumentError{Field: "default_ttl", Reason: fmt.Sprintf("default_ttl is %v, must be at most %v (10 years)", defaultTTL, MaxTTL)}
	case maxValueBytes <= 0:
		return &ArgumentError{Field: "max_value_bytes", Reason: fmt.Sprintf("max_value_bytes is %d, must be positive", maxValueBytes)}
	}
	c.limits.Store(&limits{defaultTTL: defaultTTL, maxValueBytes: maxValueBytes})
	return nil
}

// Option configures a Cache.
type Option func(*Cache)

// WithMemoryLayer sets the memory layer: a Near that keeps the entries this
// Cache read, and answers Gets from memory while Run follows the store's
// invalidation feed without a gap (it is bypassed otherwise, and while the
// store is known to be down). nil means none. Default: a NewNear() with its
// default bounds when the store is a Feed other than a MemoryStore (which is
// memory already), none otherwise.
//
// A Get answered from memory may return a value that another replica has
// overwritten in the time its invalidation takes to arrive (about a
// millisecond, at most about a second while the feed's connection is hung:
// see redisstore); a Get with FromStore never does.
func WithMemoryLayer(n *Near) Option { return func(c *Cache) { c.near, c.nearSet = n, true } }

// WithMaxWatchers bounds the open Watch channels (n > 0). Default
// DefaultMaxWatchers.
func WithMaxWatchers(n int) Option { return func(c *Cache) { c.watchers.max = n } }

// WithFeedRetry sets the pause before Run follows the store's invalidation
// feed again after it broke (d > 0). Default DefaultFeedRetry.
func WithFeedRetry(d time.Duration) Option { return func(c *Cache) { c.feedRetry = d } }

// WithFeedErrorHandler sets a function Run calls with each break of the
// store's invalidation feed, e.g. to log it. It must be safe for concurrent
// use and not block.
func WithFeedErrorHandler(f func(error)) Option { return func(c *Cache) { c.onFeedError = f } }

// GetOption configures one Get.
type GetOption func(*getOptions)

type getOptions struct{ fromStore bool }

// FromStore makes a Get read the store itself: not the memory layer, and not
// a read of the same key already in flight, which may have begun before an
// invalidation its caller has seen. A near cache fills with such reads.
func FromStore() GetOption { return fromStore }

func fromStore(o *getOptions) { o.fromStore = true }

// WithDefaultTTL sets the expiry of values Set with ttl 0 (d > 0).
// Default DefaultTTL.
func WithDefaultTTL(d time.Duration) Option { return func(c *Cache) { c.defaultTTL = d } }

// WithMaxValueBytes sets the largest value Set accepts (n > 0).
// Default DefaultMaxValueBytes.
func WithMaxValueBytes(n int) Option { return func(c *Cache) { c.maxValueBytes = n } }

// WithStoreTimeout bounds each Get, Set and Delete store call and each
// flush (d > 0), on top of the caller's deadline. Default DefaultStoreTimeout.
func WithStoreTimeout(d time.Duration) Option { return func(c *Cache) { c.storeTimeout = d } }

// WithFlushInterval sets how often Run flushes statistics (d > 0).
// Default DefaultFlushInterval.
func WithFlushInterval(d time.Duration) Option { return func(c *Cache) { c.flushInterval = d } }

// WithRetryInterval sets how long the Cache stops calling a store that
// failed (answering degraded at once) before it lets one call through to
// see whether it is back (d > 0). Default storehealth.DefaultRetryInterval
// (1s).
func WithRetryInterval(d time.Duration) Option { return func(c *Cache) { c.retryInterval = d } }

// WithFlushErrorHandler sets a function Run calls with each failed flush,
// e.g. to log it. It must be safe for concurrent use and not block.
func WithFlushErrorHandler(f func(error)) Option { return func(c *Cache) { c.onFlushError = f } }

// New returns a Cache over store. Statistics go to store when it implements
// StatsStore, and stay in process otherwise. New starts no goroutine; call
// Run to flush statistics. It returns an *ArgumentError for a bad option.
func New(store Store, opts ...Option) (*Cache, error) {
	if store == nil {
		return nil, &ArgumentError{Field: "store", Reason: "store is nil"}
	}
	c := &Cache{
		store:         store,
		defaultTTL:    DefaultTTL,
		maxValueBytes: DefaultMaxValueBytes,
		storeTimeout:  DefaultStoreTimeout,
		flushInterval: DefaultFlushInterval,
		retryInterval: storehealth.DefaultRetryInterval,
		feedRetry:     DefaultFeedRetry,
		watchers:      watchers{max: DefaultMaxWatchers},
	}
	c.feed, _ = store.(Feed)
	for _, o := range opts {
		o(c)
	}
	if _, mem := store.(*MemoryStore); !c.nearSet && c.feed != nil && !mem {
		c.near, _ = NewNear() // the defaults are valid
	}
	switch {
	case c.defaultTTL <= 0:
		return nil, &ArgumentError{Field: "default_ttl", Reason: fmt.Sprintf("default_ttl is %v, must be positive", c.defaultTTL)}
	case c.defaultTTL > MaxTTL:
		return nil, &ArgumentError{Field: "default_ttl", Reason: fmt.Sprintf("default_ttl is %v, must be at most %v (10 years)", c.defaultTTL, MaxTTL)}
	case c.maxValueBytes <= 0:
		return nil, &ArgumentError{Field: "max_value_bytes", Reason: fmt.Sprintf("max_value_bytes is %d, must be positive", c.maxValueBytes)}
	case c.storeTimeout <= 0:
		return nil, &ArgumentError{Field: "store_timeout", Reason: fmt.Sprintf("store_timeout is %v, must be positive", c.storeTimeout)}
	case c.flushInterval <= 0:
		return nil, &ArgumentError{Field: "flush_interval", Reason: fmt.Sprintf("flush_interval is %v, must be positive", c.flushInterval)}
	case c.retryInterval <= 0:
		return nil, &ArgumentError{Field: "retry_interval", Reason: fmt.Sprintf("retry_interval is %v, must be positive", c.retryInterval)}
	case c.watchers.max <= 0:
		return nil, &ArgumentError{Field: "max_watchers", Reason: fmt.Sprintf("max_watchers is %d, must be positive", c.watchers.max)}
	case c.feedRetry <= 0:
		return nil, &ArgumentError{Field: "feed_retry", Reason: fmt.Sprintf("feed_retry is %v, must be positive", c.feedRetry)}
	}
	c.health = storehealth.New(storehealth.WithRetryInterval(c.retryInterval))
	c.limits.Store(&limits{defaultTTL: c.defaultTTL, maxValueBytes: c.maxValueBytes})
	if ss, ok := store.(StatsStore); ok {
		c.stats = ss
	} else {
		c.stats = &localStats{seqs: make(map[string]uint64)}
	}
	var id [12]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails
	c.source = hex.EncodeToString(id[:])
	return c, nil
}

// GetResult is the answer of Cache.Get.
type GetResult struct {
	// Value is the cached value when Found; the slice belongs to the caller.
	Value []byte
	// TTL is the time the value had left when it was read (0: no expiry).
	TTL time.Duration
	// Found reports a hit. It is false when Degraded.
	Found bool
	// Degraded reports that the store failed and the answer is "not found"
	// by default, not by fact.
	Degraded bool
	// Err is the store error behind Degraded (wrapping ErrStoreUnavailable),
	// for logging; nil when Degraded is false.
	Err error
}

// SetResult is the answer of Cache.Set.
type SetResult struct {
	// Stored reports that the value was stored.
	Stored bool
	// TTL is the expiry applied (the default TTL when Set got 0).
	TTL time.Duration
	// Degraded reports that the store failed and nothing was stored.
	Degraded bool
	// Err is the store error behind Degraded, for logging.
	Err error
}

// DeleteResult is the answer of Cache.Delete and Cache.DeletePattern.
type DeleteResult struct {
	// Deleted is the number of keys removed.
	Deleted int64
	// Degraded reports that the store failed; some keys may or may not
	// have been removed.
	Degraded bool
	// Err is the store error behind Degraded, for logging.
	Err error
}

// Stats are the fleet-wide statistics of a cache: the totals in the
// StatsStore plus this Cache's counts not yet flushed.
type Stats struct {
	Counters
	// Keys is the number of live entries in the store.
	Keys int64
	// HitRatio is Hits / (Hits + Misses), 0 without Gets.
	HitRatio float64
}

// Get returns the value under key. Concurrent Gets of one key on this Cache
// share one store call, made by the first of them on its own goroutine and
// bounded by the store timeout only: not by that caller's deadline or
// cancellation, so a caller giving up neither leaves the others without an
// answer nor cuts a Redis connection mid-reply. A caller whose ctx is done
// returns ctx.Err() (and counts nothing): at once when it waits for another
// caller's store call, when its own call ends (within the store timeout)
// otherwise. A value written by this Cache's Set, Delete or DeletePattern
// that completed before Get started is never hidden by an older flight or
// by the memory layer.
//
// With a memory layer (WithMemoryLayer), a Get may be answered from memory
// without a store call; see WithMemoryLayer for what that means when another
// replica writes. FromStore makes Get read the store with a call of its own,
// bounded by the store timeout and ctx.
func (c *Cache) Get(ctx context.Context, key string, opts ...GetOption) (GetResult, error) {
	if err := checkKey(key); err != nil {
		return GetResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return GetResult{}, err
	}
	var o getOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.fromStore {
		return c.getFromStore(ctx, key)
	}
	if c.near != nil && c.health.Healthy() {
		if e, ok := c.near.Get(key, time.Now()); ok {
			c.pending.hits.Add(1)
			return GetResult{Value: append([]byte(nil), e.Value...), TTL: e.TTL, Found: true}, nil
		}
	}
	f, shared, err := c.flights.get(ctx, key, func() (e Entry, found bool, err error) {
		// The flight is bounded by the store timeout alone: a timeout is
		// the store's failure, never the caller's.
		return c.readStore(context.WithoutCancel(ctx), key)
	})
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return GetResult{}, err
	}
	v := f.entry.Value
	if shared {
		v = append([]byte(nil), v...)
	}
	return c.getResult(f.entry, v, f.found, f.err), nil
}

// getFromStore is Get with FromStore.
func (c *Cache) getFromStore(ctx context.Context, key string) (GetResult, error) {
	e, found, err := c.readStore(ctx, key)
	if cerr := ctx.Err(); cerr != nil {
		return GetResult{}, cerr
	}
	return c.getResult(e, e.Value, found, err), nil
}

// readStore reads key from the store through the health tracker, bounded by
// the store timeout, and fills the memory layer with what it found unless an
// invalidation of key arrived meanwhile.
func (c *Cache) readStore(ctx context.Context, key string) (e Entry, found bool, err error) {
	var fill *Fill
	if c.near != nil {
		fill = c.near.Begin(key, time.Now())
	}
	err = c.callStore(ctx, func() error {
		sctx, cancel := context.WithTimeout(ctx, c.storeTimeout)
		defer cancel()
		var err error
		e, found, err = c.store.Get(sctx, key)
		return err
	})
	if err == nil && found && fill != nil {
		c.near.Commit(fill, Entry{Value: append([]byte(nil), e.Value...), TTL: e.TTL})
	} else if fill != nil {
		c.near.Abandon(fill)
	}
	return e, found, err
}

// getResult counts one Get's outcome and returns its result, with value v.
func (c *Cache) getResult(e Entry, v []byte, found bool, err error) GetResult {
	switch {
	case err != nil:
		c.pending.errors.Add(1)
		return GetResult{Degraded: true, Err: storeError("get", err)}
	case !found:
		c.pending.misses.Add(1)
		return GetResult{}
	}
	c.pending.hits.Add(1)
	return GetResult{Value: v, TTL: e.TTL, Found: true}
}

// Set stores value under key for ttl; ttl 0 means the default TTL. It
// refuses (with an *ArgumentError, storing nothing) an empty or too long
// key, a negative ttl or one above MaxTTL, and a value above the max value
// bytes.
func (c *Cache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) (SetResult, error) {
	if err := checkKey(key); err != nil {
		return SetResult{}, err
	}
	if ttl < 0 {
		return SetResult{}, &ArgumentError{Field: "ttl", Reason: fmt.Sprintf("ttl is %v, must not be negative", ttl)}
	}
	if ttl > MaxTTL {
		return SetResult{}, &ArgumentError{Field: "ttl", Reason: fmt.Sprintf("ttl is %v, must be at most %v (10 years; 0 means the default TTL)", ttl, MaxTTL)}
	}
	lim := c.limits.Load()
	if ttl == 0 {
		ttl = lim.defaultTTL
	}
	if len(value) > lim.maxValueBytes {
		return SetResult{}, &ArgumentError{Field: "value", Reason: fmt.Sprintf("value is %d bytes, above max_value_bytes %d", len(value), lim.maxValueBytes)}
	}
	if err := ctx.Err(); err != nil {
		return SetResult{}, err
	}
	err := c.callStore(ctx, func() error {
		sctx, cancel := context.WithTimeout(ctx, c.storeTimeout)
		defer cancel()
		return c.store.Set(sctx, key, value, ttl)
	})
	c.forget(Invalidation{Kind: InvalidateSet, Keys: []string{key}})
	if err != nil {
		if ctx.Err() != nil {
			return SetResult{}, ctx.Err()
		}
		c.pending.errors.Add(1)
		return SetResult{TTL: ttl, Degraded: true, Err: storeError("set", err)}, nil
	}
	c.pending.sets.Add(1)
	return SetResult{Stored: true, TTL: ttl}, nil
}

// Delete removes the given keys and reports how many existed. It refuses
// invalid keys before touching the store.
func (c *Cache) Delete(ctx context.Context, keys ...string) (DeleteResult, error) {
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return DeleteResult{}, err
		}
	}
	if err := ctx.Err(); err != nil {
		return DeleteResult{}, err
	}
	if len(keys) == 0 {
		return DeleteResult{}, nil
	}
	var n int64
	err := c.callStore(ctx, func() error {
		sctx, cancel := context.WithTimeout(ctx, c.storeTimeout)
		defer cancel()
		var err error
		n, err = c.store.Delete(sctx, keys...)
		return err
	})
	c.forget(Invalidation{Kind: InvalidateDelete, Keys: keys})
	return c.deleteResult(ctx, "delete", n, err)
}

// DeletePattern removes every key matching pattern (Redis MATCH glob rules,
// see Match) and reports how many it removed. It may walk the whole key
// space, so only the caller's ctx bounds it (not the store timeout). It
// refuses (with an *ArgumentError) an empty pattern, one above
// MaxPatternBytes and a malformed one (see ValidatePattern).
func (c *Cache) DeletePattern(ctx context.Context, pattern string) (DeleteResult, error) {
	switch {
	case pattern == "":
		return DeleteResult{}, &ArgumentError{Field: "pattern", Reason: "pattern is empty"}
	case len(pattern) > MaxPatternBytes:
		return DeleteResult{}, &ArgumentError{Field: "pattern", Reason: fmt.Sprintf("pattern is %d bytes, above the %d-byte limit", len(pattern), MaxPatternBytes)}
	}
	if err := ValidatePattern(pattern); err != nil {
		return DeleteResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return DeleteResult{}, err
	}
	var n int64
	err := c.callStore(ctx, func() error {
		var err error
		n, err = c.store.DeletePattern(ctx, pattern)
		return err
	})
	c.forget(Invalidation{Kind: InvalidatePattern, Pattern: pattern})
	return c.deleteResult(ctx, "delete pattern", n, err)
}

// forget drops what this Cache may hold of the keys a write of its own
// changed (whether or not the store call succeeded: it may have), so that
// its later Gets read the store: the memory layer's copies and the flights
// in progress. The feed will announce the write too, later; apply drops the
// same through it for each invalidation the feed brings.
func (c *Cache) forget(inv Invalidation) {
	if c.near != nil {
		c.near.Invalidate(inv)
	}
	switch inv.Kind {
	case InvalidateSet, InvalidateDelete:
		for _, k := range inv.Keys {
			c.flights.forget(k)
		}
	default:
		c.flights.forgetAll()
	}
}

// callStore makes one store call through the health tracker: while the
// store is known to be down it fails at once with storehealth.ErrDown
// instead of waiting out another timeout. ctx is the context whose end
// means the caller gave up (which says nothing about the store).
func (c *Cache) callStore(ctx context.Context, fn func() error) error {
	call, ok := c.health.Begin()
	if !ok {
		return storehealth.ErrDown
	}
	err := fn()
	call.End(storehealth.OutcomeOf(ctx, err))
	return err
}

// StoreHealthy reports whether the Cache currently calls its store (no
// failure seen since the last successful probe).
func (c *Cache) StoreHealthy() bool { return c.health.Healthy() }

func (c *Cache) deleteResult(ctx context.Context, op string, n int64, err error) (DeleteResult, error) {
	if n > 0 {
		c.pending.deletes.Add(n)
	}
	if err != nil {
		if ctx.Err() != nil {
			return DeleteResult{Deleted: n}, ctx.Err()
		}
		c.pending.errors.Add(1)
		return DeleteResult{Deleted: n, Degraded: true, Err: storeError(op, err)}, nil
	}
	return DeleteResult{Deleted: n}, nil
}

// Stats returns the fleet-wide statistics: the StatsStore totals plus this
// Cache's unflushed counts, and the store's Len. When the store fails it
// returns what it could read (at least this Cache's unflushed counts) and an
// error wrapping ErrStoreUnavailable. Only ctx bounds it: Len may walk the
// whole key space.
func (c *Cache) Stats(ctx context.Context) (Stats, error) {
	local := c.unflushed()
	total, err := c.stats.LoadStats(ctx)
	if err != nil {
		return Stats{Counters: local, HitRatio: local.HitRatio()}, storeError("load stats", err)
	}
	total = total.Add(local)
	keys, err := c.store.Len(ctx)
	st := Stats{Counters: total, Keys: keys, HitRatio: total.HitRatio()}
	if err != nil {
		return st, storeError("len", err)
	}
	return st, nil
}

// unflushed returns the counts not yet added to the StatsStore.
func (c *Cache) unflushed() Counters {
	l := Counters{
		Hits:    c.pending.hits.Load(),
		Misses:  c.pending.misses.Load(),
		Sets:    c.pending.sets.Load(),
		Deletes: c.pending.deletes.Load(),
		Errors:  c.pending.errors.Load(),
	}
	if d := c.inflight.Load(); d != nil {
		l = l.Add(d.Counters)
	}
	return l
}

// Flush adds this Cache's unflushed counts to the StatsStore. A failed
// flush keeps the counts: the batch is retried as is by the next Flush, and
// the StatsStore applies each batch once even if a reply was lost.
// Flush is safe for concurrent use; flushes are serialised.
func (c *Cache) Flush(ctx context.Context) error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	if d := c.inflight.Load(); d != nil {
		if err := c.stats.AddStats(ctx, *d); err != nil {
			return storeError("flush stats", err)
		}
		c.inflight.Store(nil)
	}
	delta := Counters{
		Hits:    c.pending.hits.Swap(0),
		Misses:  c.pending.misses.Swap(0),
		Sets:    c.pending.sets.Swap(0),
		Deletes: c.pending.deletes.Swap(0),
		Errors:  c.pending.errors.Swap(0),
	}
	if delta.IsZero() {
		return nil
	}
	c.seq++
	d := &StatsDelta{Source: c.source, Seq: c.seq, Counters: delta}
	c.inflight.Store(d)
	if err := c.stats.AddStats(ctx, *d); err != nil {
		return storeError("flush stats", err)
	}
	c.inflight.Store(nil)
	return nil
}

// Run flushes statistics every FlushInterval until ctx is done, then makes
// a last flush bounded by the store timeout and returns its error (nil when
// it succeeded). Errors of periodic flushes go to the flush error handler;
// their counts are kept for the next flush.
//
// When the store is a Feed, Run also follows its invalidations (on a
// goroutine of its own, ended and waited for before Run returns), again
// after each break (WithFeedRetry): meanwhile the memory layer answers and
// Watch works. Call Run once per Cache; the caller owns the goroutine that
// calls it and should wait for it.
func (c *Cache) Run(ctx context.Context) error {
	if c.feed == nil {
		return c.flushLoop(ctx)
	}
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.follow(fctx)
	}()
	err := c.flushLoop(ctx)
	cancel()
	<-done
	return err
}

func (c *Cache) flushLoop(ctx context.Context) error {
	t := time.NewTicker(c.flushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.storeTimeout)
			defer cancel()
			return c.Flush(fctx)
		case <-t.C:
			fctx, cancel := context.WithTimeout(ctx, c.storeTimeout)
			err := c.Flush(fctx)
			cancel()
			if err != nil && c.onFlushError != nil {
				c.onFlushError(err)
			}
		}
	}
}

func checkKey(key string) error {
	switch {
	case key == "":
		return &ArgumentError{Field: "key", Reason: "key is empty"}
	case len(key) > MaxKeyBytes:
		return &ArgumentError{Field: "key", Reason: fmt.Sprintf("key is %d bytes, above the %d-byte limit", len(key), MaxKeyBytes)}
	}
	return nil
}

func storeError(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrStoreUnavailable, op, err)
}

// localStats keeps statistics in process: for a Store that is not a
// StatsStore, and for the MemoryStore. It applies a StatsDelta once per Seq
// and Source.
type localStats struct {
	mu    sync.Mutex // protects the fields below
	total Counters
	seqs  map[string]uint64 // last StatsDelta.Seq applied per Source
}

func (l *localStats) AddStats(_ context.Context, d StatsDelta) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if d.Seq != 0 && d.Seq <= l.seqs[d.Source] {
		return nil
	}
	l.seqs[d.Source] = d.Seq
	l.total = l.total.Add(d.Counters)
	return nil
}

func (l *localStats) LoadStats(context.Context) (Counters, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, nil
}
