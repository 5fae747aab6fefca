package breaker

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Defaults of a StateCache.
const (
	// DefaultCacheMaxAge is how long a StateCache trusts an entry that no
	// event or observation refreshed.
	DefaultCacheMaxAge = 5 * time.Second
	// DefaultCacheMaxEntries bounds the breakers a StateCache remembers; the
	// least recently refreshed are forgotten first.
	DefaultCacheMaxEntries = 50_000
	// DefaultCacheIdleTTL is how long a StateCache remembers a breaker that
	// nothing refreshed (for Resync; Lookup trusts an entry for the max age
	// only).
	DefaultCacheIdleTTL = 10 * time.Minute
)

// StateCache remembers, per replica, the last known state and generation of
// each breaker, fed by Store.Watch events (Run) and by store answers
// (Observe). Given to a Breaker (WithStateCache), it lets the Breaker skip
// the store for breakers it knows to be CLOSED, and the Breaker observes the
// store's answers in it. It is eventually consistent: a transition made by another
// replica is seen when its event arrives; entries older than the maximum age
// are not trusted, and a ReasonResync event (a possible gap) clears the
// cache. After the store lost its data, Resync re-reads the breakers it
// knew.
//
// Its memory is bounded: at most the maximum number of entries
// (WithCacheMaxEntries), the least recently refreshed forgotten first, and
// entries nothing refreshed for the idle TTL (WithCacheIdleTTL) are dropped.
// Both cost O(1) per call.
//
// Create it with NewStateCache; the zero value is not usable. It is safe for
// concurrent use and starts no goroutine: the caller runs Run.
type StateCache struct {
	maxAge     time.Duration
	idleTTL    time.Duration
	maxEntries int
	now        func() time.Time
	hooks      CacheHooks

	mu      sync.RWMutex // protects the fields below
	entries map[string]*cacheEntry
	// newest and oldest are the ends of the list of entries in the order
	// they were last refreshed (newest first).
	newest, oldest *cacheEntry
}

type cacheEntry struct {
	name         string
	state        State
	gen          uint64
	at           int64 // Unix ns of the last refresh
	newer, older *cacheEntry
}

// CacheOption configures a StateCache.
type CacheOption func(*StateCache)

// CacheHooks are told what a StateCache learns, for metrics and tests. A
// nil hook is not called. Hooks run on the caller's goroutine, outside the
// cache's lock, and must not block.
type CacheHooks struct {
	// Watching is called each time Run's subscription to the store's
	// events is in place, before the first event is applied.
	Watching func()
	// Event is called for each event applied (Apply, Run), resync markers
	// included.
	Event func(Event)
	// Observed is called for each observation recorded (Observe, Resync):
	// a state the store answered, not older than the one known.
	Observed func(name string, st State)
}

// WithCacheHooks sets the cache's hooks (default: none).
func WithCacheHooks(h CacheHooks) CacheOption { return func(c *StateCache) { c.hooks = h } }

// WithCacheMaxAge sets how long an entry is trusted (default 5s).
func WithCacheMaxAge(d time.Duration) CacheOption { return func(c *StateCache) { c.maxAge = d } }

// WithCacheClock sets the cache's clock (default time.Now).
func WithCacheClock(now func() time.Time) CacheOption { return func(c *StateCache) { c.now = now } }

// WithCacheMaxEntries sets how many breakers the cache remembers at most
// (default 50,000; values below 1 mean 1).
func WithCacheMaxEntries(n int) CacheOption {
	return func(c *StateCache) { c.maxEntries = max(n, 1) }
}

// WithCacheIdleTTL sets how long the cache remembers a breaker that nothing
// refreshed (default 10 minutes, never less than the max age).
func WithCacheIdleTTL(d time.Duration) CacheOption { return func(c *StateCache) { c.idleTTL = d } }

// NewStateCache returns an empty cache.
func NewStateCache(opts ...CacheOption) *StateCache {
	c := &StateCache{
		maxAge:     DefaultCacheMaxAge,
		idleTTL:    DefaultCacheIdleTTL,
		maxEntries: DefaultCacheMaxEntries,
		now:        time.Now,
		entries:    map[string]*cacheEntry{},
	}
	for _, o := range opts {
		o(c)
	}
	c.idleTTL = max(c.idleTTL, c.maxAge)
	return c
}

// Run watches store for breakers under prefix and applies their events until
// ctx ends or the watch channel closes. It returns the Watch error, or nil.
// The cache is cleared when Run returns (no more events would keep it right).
func (c *StateCache) Run(ctx context.Context, store Store, prefix string) error {
	defer c.Clear()
	ch, err := store.Watch(ctx, prefix)
	if err != nil {
		return err
	}
	if c.hooks.Watching != nil {
		c.hooks.Watching()
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
	} else {
		c.record(e.Name, e.To, e.Generation)
	}
	if c.hooks.Event != nil {
		c.hooks.Event(e)
	}
}

// Observe records a state that the store answered (Admission.State and
// Generation, for example). Degraded answers must not be observed, nor
// generation 0 (no state). An observation older (by generation) than the
// entry is ignored.
func (c *StateCache) Observe(name string, st State, gen uint64) {
	if c.record(name, st, gen) && c.hooks.Observed != nil {
		c.hooks.Observed(name, st)
	}
}

// record keeps st and gen as name's entry unless they are older than it,
// and reports whether it did.
func (c *StateCache) record(name string, st State, gen uint64) bool {
	if gen&LocalGenerationBit != 0 || gen == 0 {
		return false
	}
	now := c.now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[name]; ok {
		if e.gen > gen {
			return false
		}
		e.state, e.gen, e.at = st, gen, now
		c.unlinkLocked(e)
		c.pushLocked(e)
	} else {
		e := &cacheEntry{name: name, state: st, gen: gen, at: now}
		c.entries[name] = e
		c.pushLocked(e)
	}
	c.pruneLocked(now)
	return true
}

// pushLocked links e as the newest entry.
func (c *StateCache) pushLocked(e *cacheEntry) {
	e.older, e.newer = c.newest, nil
	if c.newest != nil {
		c.newest.newer = e
	}
	c.newest = e
	if c.oldest == nil {
		c.oldest = e
	}
}

// unlinkLocked takes e out of the list (not out of the map).
func (c *StateCache) unlinkLocked(e *cacheEntry) {
	if e.newer != nil {
		e.newer.older = e.older
	} else {
		c.newest = e.older
	}
	if e.older != nil {
		e.older.newer = e.newer
	} else {
		c.oldest = e.newer
	}
	e.newer, e.older = nil, nil
}

// removeLocked forgets e.
func (c *StateCache) removeLocked(e *cacheEntry) {
	c.unlinkLocked(e)
	delete(c.entries, e.name)
}

// pruneLocked forgets the entries beyond the maximum number and those idle
// for longer than the idle TTL, oldest first.
func (c *StateCache) pruneLocked(now int64) {
	for c.oldest != nil && (len(c.entries) > c.maxEntries || now-c.oldest.at > int64(c.idleTTL)) {
		c.removeLocked(c.oldest)
	}
}

// Lookup returns the known state and generation of name; ok is false when
// the cache has no entry younger than the maximum age.
func (c *StateCache) Lookup(name string) (st State, gen uint64, ok bool) {
	c.mu.RLock()
	e, found := c.entries[name]
	var state State
	var g uint64
	var at int64
	if found {
		state, g, at = e.state, e.gen, e.at
	}
	c.mu.RUnlock()
	if !found || c.now().UnixNano()-at > int64(c.maxAge) {
		return 0, 0, false
	}
	return state, g, true
}

// Len returns the number of breakers the cache remembers.
func (c *StateCache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// Forget drops the entry of name, if any.
func (c *StateCache) Forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[name]; ok {
		c.removeLocked(e)
	}
}

// Clear forgets every entry.
func (c *StateCache) Clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
	c.newest, c.oldest = nil, nil
}

// Resync brings the cache back in line with store after the store lost its
// data (a server calls it when its store-epoch check sees the loss): the
// breakers of which the cache knows a CLOSED state are forgotten (the next
// admission asks the store, which starts a new generation), and those it
// knows OPEN or HALF_OPEN are read again with Status. For each of those whose
// state or generation changed, it makes an Event with ReasonDataLoss, From
// the state the cache knew, To and Generation as the store answers
// (Generation 0 when the breaker has no state left; it is then forgotten),
// announces it to store's watchers when store is an Announcer (Breaker and
// both stores are), and returns the events.
//
// It reads at most the number of entries, one Status each; it stops at the
// first error (store unavailable, or a degraded answer, which would be the
// local breaker's state) and returns the events made so far with it. It
// stops as well when ctx ends.
func (c *StateCache) Resync(ctx context.Context, store Store) ([]Event, error) {
	type known struct {
		name  string
		state State
		gen   uint64
	}
	var check []known
	c.mu.Lock()
	for e := c.oldest; e != nil; {
		next := e.newer
		if e.state == StateClosed {
			c.removeLocked(e)
		} else {
			check = append(check, known{e.name, e.state, e.gen})
		}
		e = next
	}
	c.mu.Unlock()

	var events []Event
	announce, _ := store.(Announcer)
	for _, k := range check {
		if err := ctx.Err(); err != nil {
			return events, err
		}
		st, err := store.Status(ctx, k.name, Settings{})
		if err != nil {
			return events, err
		}
		if st.Degraded {
			return events, fmt.Errorf("%w: resync of %q: the store did not answer", ErrStoreUnavailable, k.name)
		}
		if st.State == k.state && st.Generation == k.gen {
			continue
		}
		e := Event{Name: k.name, From: k.state, To: st.State, Generation: st.Generation, At: c.now(), Reason: ReasonDataLoss}
		c.mu.Lock()
		if cur, ok := c.entries[k.name]; ok && cur.gen == k.gen { // not refreshed meanwhile
			c.removeLocked(cur)
		}
		c.mu.Unlock()
		c.Observe(k.name, st.State, st.Generation)
		if announce != nil {
			announce.Announce(e)
		}
		events = append(events, e)
	}
	return events, nil
}
