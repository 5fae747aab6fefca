package cache

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Memory store defaults.
const (
	// DefaultMemoryMaxBytes is the byte budget of a MemoryStore unless
	// WithMaxBytes says otherwise.
	DefaultMemoryMaxBytes = 64 << 20
	// entryOverhead is the bookkeeping charged per entry on top of its key
	// and value, so that many tiny entries stay bounded too.
	entryOverhead = 96
)

// MemoryStore is the embedded in-process Store: exact on one replica, lost
// on restart. It evicts the least recently used entries when an insert
// would exceed its entry or byte budget, and never returns an expired entry.
// It also implements StatsStore in process, and Feed: Set, Delete and
// DeletePattern call the followers' functions before they return.
//
// Create it with NewMemoryStore; the zero value is not usable. A MemoryStore
// is safe for concurrent use.
type MemoryStore struct {
	now        func() time.Time
	maxEntries int   // 0: no limit on the count
	maxBytes   int64 // > 0

	mu    sync.Mutex               // protects the fields below
	items map[string]*list.Element // of *memEntry
	lru   *list.List               // front: most recently used
	bytes int64                    // sum of memEntry.size

	stats localStats // the in-process totals, with their own lock

	// fmu serialises the calls of the followers' functions, and protects
	// followers.
	fmu       sync.Mutex
	followers map[*func(Invalidation)]struct{}
	following atomic.Int32 // len(followers), read without fmu
}

type memEntry struct {
	key      string
	value    []byte
	expireAt time.Time // zero: no expiry
	size     int64
}

var (
	_ Store      = (*MemoryStore)(nil)
	_ StatsStore = (*MemoryStore)(nil)
	_ Feed       = (*MemoryStore)(nil)
)

// MemoryOption configures a MemoryStore.
type MemoryOption func(*MemoryStore)

// WithMaxEntries bounds the number of entries (n > 0); the default is no
// count limit (the byte budget still applies).
func WithMaxEntries(n int) MemoryOption { return func(s *MemoryStore) { s.maxEntries = n } }

// WithMaxBytes sets the byte budget: the sum over entries of key length,
// value length and a fixed per-entry overhead. Default DefaultMemoryMaxBytes.
func WithMaxBytes(n int64) MemoryOption { return func(s *MemoryStore) { s.maxBytes = n } }

// WithClock sets the clock used for expiry; the default is time.Now.
func WithClock(now func() time.Time) MemoryOption { return func(s *MemoryStore) { s.now = now } }

// NewMemoryStore returns an empty MemoryStore. It returns an *ArgumentError
// for a negative entry limit or a non-positive byte budget.
func NewMemoryStore(opts ...MemoryOption) (*MemoryStore, error) {
	s := &MemoryStore{
		now:      time.Now,
		maxBytes: DefaultMemoryMaxBytes,
		items:    make(map[string]*list.Element),
		lru:      list.New(),
		stats:    localStats{seqs: make(map[string]uint64)},
	}
	for _, o := range opts {
		o(s)
	}
	if s.maxEntries < 0 {
		return nil, &ArgumentError{Field: "max_entries", Reason: fmt.Sprintf("max_entries is %d, must not be negative", s.maxEntries)}
	}
	if s.maxBytes <= 0 {
		return nil, &ArgumentError{Field: "max_bytes", Reason: fmt.Sprintf("max_bytes is %d, must be positive", s.maxBytes)}
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// Get returns a copy of the live entry under key. An expired entry is
// removed and reported missing. A hit makes the entry most recently used.
func (s *MemoryStore) Get(ctx context.Context, key string) (Entry, bool, error) {
	if err := ctx.Err(); err != nil {
		return Entry{}, false, err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.items[key]
	if !ok {
		return Entry{}, false, nil
	}
	e := el.Value.(*memEntry)
	if expiredAt(e, now) {
		s.removeLocked(el)
		return Entry{}, false, nil
	}
	s.lru.MoveToFront(el)
	var ttl time.Duration
	if !e.expireAt.IsZero() {
		ttl = e.expireAt.Sub(now)
	}
	return Entry{Value: append([]byte(nil), e.value...), TTL: ttl}, true, nil
}

// Set stores a copy of value. It evicts least recently used entries (expired
// ones first come free) until the new entry fits; an entry larger than the
// whole byte budget is refused with ErrEntryTooLarge.
func (s *MemoryStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e := &memEntry{key: key, value: append([]byte(nil), value...)}
	e.size = int64(len(key)+len(value)) + entryOverhead
	if e.size > s.maxBytes {
		return fmt.Errorf("%w: entry is %d bytes, max_bytes is %d", ErrEntryTooLarge, e.size, s.maxBytes)
	}
	now := s.now()
	if ttl > 0 {
		e.expireAt = now.Add(ttl)
	}
	s.mu.Lock()
	if el, ok := s.items[key]; ok {
		s.removeLocked(el)
	}
	for s.lru.Len() > 0 && (s.bytes+e.size > s.maxBytes || (s.maxEntries > 0 && s.lru.Len() >= s.maxEntries)) {
		s.removeLocked(s.lru.Back())
	}
	s.items[key] = s.lru.PushFront(e)
	s.bytes += e.size
	s.mu.Unlock()
	if s.following.Load() > 0 {
		s.announce(Invalidation{Kind: InvalidateSet, Keys: []string{key}})
	}
	return nil
}

// Delete removes the given keys and returns how many live entries it removed.
func (s *MemoryStore) Delete(ctx context.Context, keys ...string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := s.now()
	s.mu.Lock()
	var n int64
	for _, k := range keys {
		if el, ok := s.items[k]; ok {
			if !expiredAt(el.Value.(*memEntry), now) {
				n++
			}
			s.removeLocked(el)
		}
	}
	s.mu.Unlock()
	if s.following.Load() > 0 {
		s.announce(Invalidation{Kind: InvalidateDelete, Keys: append([]string(nil), keys...)})
	}
	return n, nil
}

// DeletePattern removes every entry whose key matches pattern (see Match)
// and returns how many live entries it removed. It holds the store's lock
// for one pass over all entries.
func (s *MemoryStore) DeletePattern(ctx context.Context, pattern string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := s.now()
	s.mu.Lock()
	var n int64
	for k, el := range s.items {
		if Match(pattern, k) {
			if !expiredAt(el.Value.(*memEntry), now) {
				n++
			}
			s.removeLocked(el)
		}
	}
	s.mu.Unlock()
	if s.following.Load() > 0 {
		s.announce(Invalidation{Kind: InvalidatePattern, Pattern: pattern})
	}
	return n, nil
}

// Len returns the number of live entries, dropping expired ones it finds.
func (s *MemoryStore) Len(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, el := range s.items {
		if expiredAt(el.Value.(*memEntry), now) {
			s.removeLocked(el)
		}
	}
	return int64(len(s.items)), nil
}

// Bytes returns the bytes currently charged against the budget, expired
// entries not yet dropped included. It is meant for tests and metrics.
func (s *MemoryStore) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// AddStats adds d to the in-process totals unless its Seq was already
// applied for its Source.
func (s *MemoryStore) AddStats(ctx context.Context, d StatsDelta) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.stats.AddStats(ctx, d)
}

// LoadStats returns the in-process totals.
func (s *MemoryStore) LoadStats(ctx context.Context) (Counters, error) {
	if err := ctx.Err(); err != nil {
		return Counters{}, err
	}
	return s.stats.LoadStats(ctx)
}

// Follow implements Feed in process: it calls fn with an InvalidateAll, then
// with the invalidation of each Set, Delete and DeletePattern (on the
// writer's goroutine, before the write returns) until ctx ends, and returns
// nil. It never fails.
func (s *MemoryStore) Follow(ctx context.Context, fn func(Invalidation)) error {
	if err := ctx.Err(); err != nil {
		return nil
	}
	s.fmu.Lock()
	if s.followers == nil {
		s.followers = map[*func(Invalidation)]struct{}{}
	}
	s.followers[&fn] = struct{}{}
	s.following.Add(1)
	fn(Invalidation{Kind: InvalidateAll})
	s.fmu.Unlock()
	<-ctx.Done()
	s.fmu.Lock()
	delete(s.followers, &fn)
	s.following.Add(-1)
	s.fmu.Unlock()
	return nil
}

// announce calls every follower's function with inv.
func (s *MemoryStore) announce(inv Invalidation) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	for fn := range s.followers {
		(*fn)(inv)
	}
}

func (s *MemoryStore) removeLocked(el *list.Element) {
	e := s.lru.Remove(el).(*memEntry)
	delete(s.items, e.key)
	s.bytes -= e.size
}

// expiredAt reports whether e has expired at now: an entry is dead from its
// expiry instant on.
func expiredAt(e *memEntry, now time.Time) bool {
	return !e.expireAt.IsZero() && !now.Before(e.expireAt)
}
