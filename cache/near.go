package cache

import (
	"container/list"
	"fmt"
	"sync"
	"time"
)

// Defaults of a Near.
const (
	// DefaultNearMaxEntries bounds the entries of a Near unless
	// WithNearMaxEntries says otherwise.
	DefaultNearMaxEntries = 10_000
	// DefaultNearMaxBytes bounds the bytes of a Near (keys, values and a
	// fixed overhead per entry) unless WithNearMaxBytes says otherwise.
	DefaultNearMaxBytes = 16 << 20
	// nearOverhead is the bookkeeping charged per entry of a Near.
	nearOverhead = 128
)

// Near is a bounded in-process copy of recently read entries of a shared
// cache, kept right by the invalidations of every write (a Feed, or a stream
// of them): the memory layer of a Cache on a replica, and the near cache of
// the Go SDK.
//
// The model: a Near answers only while it is live, that is while its owner
// follows the invalidations without a gap. SetLive(false) (the feed broke)
// empties it and makes it answer nothing; SetLive(true) (subscribed again)
// starts it empty. An entry is dropped when an invalidation names it, when
// the TTL its read reported has passed (counted from when the read began,
// so a copy never outlives the stored entry) and when it is the least
// recently used one over the entry or byte bound.
//
// A read of the store that may fill the Near is bracketed by Begin and
// Commit: an invalidation of the key (or a gap) that arrives while the read
// is in flight makes Commit drop what the read returned, which may be older
// than the invalidation. So, once an invalidation has arrived, nothing older
// than it is served, provided that reads which began after it read the
// store itself (not a copy that may not have seen it).
//
// Time is a parameter (now). Create a Near with NewNear; the zero value is
// not usable. A Near is safe for concurrent use and starts no goroutine.
type Near struct {
	maxEntries int
	maxBytes   int64
	maxAge     time.Duration // 0: entries live until their TTL

	mu    sync.Mutex // protects the fields below
	live  bool
	epoch uint64 // advanced when the Near is emptied: older fills are void
	items map[string]*list.Element
	lru   *list.List // of *nearEntry; front: most recently used
	bytes int64
	fills map[string][]*Fill // reads in flight, by key
}

type nearEntry struct {
	key      string
	value    []byte
	expireAt time.Time // zero: no expiry
	size     int64
}

// Fill is a read of the store in flight that may fill a Near: see
// Near.Begin. A nil *Fill is valid and fills nothing.
type Fill struct {
	key   string
	start time.Time
	epoch uint64
	stale bool // an invalidation of key arrived; protected by Near.mu
}

// NearOption configures a Near.
type NearOption func(*Near)

// WithNearMaxEntries bounds the number of entries (n > 0). Default
// DefaultNearMaxEntries.
func WithNearMaxEntries(n int) NearOption { return func(c *Near) { c.maxEntries = n } }

// WithNearMaxBytes bounds the bytes held: keys, values and a fixed overhead
// per entry (n > 0). Default DefaultNearMaxBytes. An entry larger than the
// whole bound is not kept.
func WithNearMaxBytes(n int64) NearOption { return func(c *Near) { c.maxBytes = n } }

// WithNearMaxAge bounds how long an entry is kept after its read began, on
// top of its TTL (d > 0): a safety net for writes made around the service
// (a redis-cli SET), which no invalidation announces. Default: no bound
// beyond the TTL.
func WithNearMaxAge(d time.Duration) NearOption { return func(c *Near) { c.maxAge = d } }

// NewNear returns an empty Near that is not live. It returns an
// *ArgumentError for a bound that is not positive.
func NewNear(opts ...NearOption) (*Near, error) {
	n := &Near{
		maxEntries: DefaultNearMaxEntries,
		maxBytes:   DefaultNearMaxBytes,
		items:      map[string]*list.Element{},
		lru:        list.New(),
		fills:      map[string][]*Fill{},
	}
	for _, o := range opts {
		o(n)
	}
	switch {
	case n.maxEntries <= 0:
		return nil, &ArgumentError{Field: "max_entries", Reason: fmt.Sprintf("near cache max_entries is %d, must be positive", n.maxEntries)}
	case n.maxBytes <= 0:
		return nil, &ArgumentError{Field: "max_bytes", Reason: fmt.Sprintf("near cache max_bytes is %d, must be positive", n.maxBytes)}
	case n.maxAge < 0:
		return nil, &ArgumentError{Field: "max_age", Reason: fmt.Sprintf("near cache max_age is %v, must not be negative", n.maxAge)}
	}
	return n, nil
}

// Get returns the entry under key, with the TTL it has left at now, when
// the Near is live and holds it unexpired; a hit makes it the most recently
// used. The returned Value is shared: it must not be modified.
func (n *Near) Get(key string, now time.Time) (Entry, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.live {
		return Entry{}, false
	}
	el, ok := n.items[key]
	if !ok {
		return Entry{}, false
	}
	e := el.Value.(*nearEntry)
	var ttl time.Duration
	if !e.expireAt.IsZero() {
		if ttl = e.expireAt.Sub(now); ttl <= 0 {
			n.removeLocked(el)
			return Entry{}, false
		}
	}
	n.lru.MoveToFront(el)
	return Entry{Value: e.value, TTL: ttl}, true
}

// Begin registers a read of key from the store that starts at now, and
// returns the Fill to Commit (or Abandon) when it ends. It returns nil when
// the Near is not live: nothing read then may be kept.
func (n *Near) Begin(key string, now time.Time) *Fill {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.live {
		return nil
	}
	f := &Fill{key: key, start: now, epoch: n.epoch}
	n.fills[key] = append(n.fills[key], f)
	return f
}

// Commit ends f, keeping e (the entry its read returned) unless an
// invalidation of f's key or a gap arrived since Begin, and reports whether
// it kept it. The entry expires its TTL after Begin's now. Commit keeps
// e.Value itself: the caller must not modify it afterwards. Commit of a nil
// Fill keeps nothing.
func (n *Near) Commit(f *Fill, e Entry) bool {
	if f == nil {
		return false
	}
	size := int64(len(f.key)+len(e.Value)) + nearOverhead
	n.mu.Lock()
	defer n.mu.Unlock()
	n.unregisterLocked(f)
	if f.stale || f.epoch != n.epoch || !n.live || size > n.maxBytes {
		return false
	}
	ne := &nearEntry{key: f.key, value: e.Value, size: size}
	if e.TTL > 0 {
		ne.expireAt = f.start.Add(e.TTL)
	}
	if n.maxAge > 0 {
		if limit := f.start.Add(n.maxAge); ne.expireAt.IsZero() || limit.Before(ne.expireAt) {
			ne.expireAt = limit
		}
	}
	if el, ok := n.items[f.key]; ok {
		n.removeLocked(el)
	}
	for n.lru.Len() > 0 && (n.bytes+size > n.maxBytes || n.lru.Len() >= n.maxEntries) {
		n.removeLocked(n.lru.Back())
	}
	n.items[f.key] = n.lru.PushFront(ne)
	n.bytes += size
	return true
}

// Abandon ends f without keeping anything (the read failed or missed). It
// accepts a nil Fill.
func (n *Near) Abandon(f *Fill) {
	if f == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.unregisterLocked(f)
}

// Invalidate drops the entries inv names, and makes the reads in flight of
// those keys keep nothing. InvalidateAll (or an unknown kind) empties the
// Near, which stays live.
func (n *Near) Invalidate(inv Invalidation) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch inv.Kind {
	case InvalidateSet, InvalidateDelete:
		for _, k := range inv.Keys {
			if el, ok := n.items[k]; ok {
				n.removeLocked(el)
			}
			for _, f := range n.fills[k] {
				f.stale = true
			}
			delete(n.fills, k)
		}
	case InvalidatePattern:
		for k, el := range n.items {
			if Match(inv.Pattern, k) {
				n.removeLocked(el)
			}
		}
		for k, fs := range n.fills {
			if Match(inv.Pattern, k) {
				for _, f := range fs {
					f.stale = true
				}
				delete(n.fills, k)
			}
		}
	default:
		n.clearLocked()
	}
}

// SetLive empties the Near and sets whether it answers: false when the
// invalidations stopped (a gap began), true once they follow again from an
// InvalidateAll. Reads in flight keep nothing either way.
func (n *Near) SetLive(live bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.clearLocked()
	n.live = live
}

// Live reports whether the Near answers.
func (n *Near) Live() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.live
}

// Len returns the number of entries held, expired ones not yet dropped
// included.
func (n *Near) Len() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lru.Len()
}

// Bytes returns the bytes charged against the byte bound.
func (n *Near) Bytes() int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.bytes
}

func (n *Near) clearLocked() {
	n.epoch++
	clear(n.items)
	n.lru.Init()
	n.bytes = 0
	clear(n.fills) // void by the epoch
}

func (n *Near) removeLocked(el *list.Element) {
	e := n.lru.Remove(el).(*nearEntry)
	delete(n.items, e.key)
	n.bytes -= e.size
}

func (n *Near) unregisterLocked(f *Fill) {
	fs := n.fills[f.key]
	for i, g := range fs {
		if g == f {
			fs[i] = fs[len(fs)-1]
			fs[len(fs)-1] = nil
			fs = fs[:len(fs)-1]
			break
		}
	}
	if len(fs) == 0 {
		delete(n.fills, f.key)
	} else {
		n.fills[f.key] = fs
	}
}
