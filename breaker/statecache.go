package breaker

import (
	"context"
	"sync"
	"time"
)

// DefaultCacheMaxAge is how long a StateCache trusts an entry that no event
// or observation refreshed.
const DefaultCacheMaxAge = 5 * time.Second

// StateCache remembers, per replica, the last known state and generation of
// each breaker, fed by Store.Watch events (Run) and by store answers
// (Observe). A server may use it to skip the store for breakers it knows to
// be CLOSED. It is eventually consistent: a transition made by another
// replica is seen when its event arrives; entries older than the maximum age
// are not trusted, and a ReasonResync event (a possible gap) clears the
// cache.
//
// Create it with NewStateCache; the zero value is not usable. It is safe for
// concurrent use and starts no goroutine: the caller runs Run.
type StateCache struct {
	maxAge time.Duration
	now    func() time.Time

	mu      sync.RWMutex // protects entries
	entries map[string]cacheEntry
}

type cacheEntry struct {
	state State
	gen   uint64
	at    time.Time
}

// CacheOption configures a StateCache.
type CacheOption func(*StateCache)

// WithCacheMaxAge sets how long an entry is trusted (default 5s).
func WithCacheMaxAge(d time.Duration) CacheOption { return func(c *StateCache) { c.maxAge = d } }

// WithCacheClock sets the cache's clock (default time.Now).
func WithCacheClock(now func() time.Time) CacheOption { return func(c *StateCache) { c.now = now } }

// NewStateCache returns an empty cache.
func NewStateCache(opts ...CacheOption) *StateCache {
	c := &StateCache{maxAge: DefaultCacheMaxAge, now: time.Now, entries: map[string]cacheEntry{}}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Run watches store for breakers under prefix and applies their events until
// ctx ends. It returns the Watch error, or nil when ctx ended. The cache is
// cleared when Run returns (no more events would keep it right).
func (c *StateCache) Run(ctx context.Context, store Store, prefix string) error {
	defer c.Clear()
	ch, err := store.Watch(ctx, prefix)
	if err != nil {
		return err
	}
	for e := range ch {
		c.Apply(e)
	}
	return nil
}

// Apply records an event. Events older (by generation) than the entry are
// ignored; ReasonResync clears the cache.
func (c *StateCache) Apply(e Event) {
	if e.Reason == ReasonResync {
		c.Clear()
		return
	}
	c.Observe(e.Name, e.To, e.Generation)
}

// Observe records a state that the store answered (Admission.State and
// Generation, for example). Degraded answers must not be observed. An
// observation older (by generation) than the entry is ignored.
func (c *StateCache) Observe(name string, st State, gen uint64) {
	if gen&LocalGenerationBit != 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[name]; ok && old.gen > gen {
		return
	}
	c.entries[name] = cacheEntry{state: st, gen: gen, at: c.now()}
}

// Lookup returns the known state and generation of name; ok is false when
// the cache has no entry younger than the maximum age.
func (c *StateCache) Lookup(name string) (st State, gen uint64, ok bool) {
	c.mu.RLock()
	e, found := c.entries[name]
	c.mu.RUnlock()
	if !found || c.now().Sub(e.at) > c.maxAge {
		return 0, 0, false
	}
	return e.state, e.gen, true
}

// Clear forgets every entry.
func (c *StateCache) Clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
}
