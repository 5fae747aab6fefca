package redisstore

import (
	"hash/maphash"
	"sync"
)

// DefaultMaxRegisteredNames bounds the names a Store remembers having
// registered (see registered): about 20 bytes each, so at most about 2 MB.
const DefaultMaxRegisteredNames = 100_000

// registered is a Store's memory of the names it registered recently, so
// that it registers a name it keeps using once per refresh period rather
// than on every call. It is approximate and bounded: it keeps a 64-bit hash
// of each name (a collision, about one in 2^64 per pair, would only skip a
// registration until the next period) with the time it was registered, in
// two generations of at most max/2 entries each. The current generation
// becomes the previous one, and the previous one is dropped, when it is full
// or a refresh period has passed. Forgetting a name costs one registration
// (two idempotent commands) the next time it is used, never a wrong answer.
//
// It is safe for concurrent use.
type registered struct {
	seed maphash.Seed
	max  int // entries in both generations together

	mu        sync.RWMutex // protects the fields below
	cur, prev map[uint64]int64
	rotated   int64 // when cur was started (ns)
}

func newRegistered(limit int) *registered {
	return &registered{seed: maphash.MakeSeed(), max: max(limit, 2), cur: map[uint64]int64{}}
}

func (r *registered) hash(name string) uint64 { return maphash.String(r.seed, name) }

// recent reports whether name was registered in (now-every, now].
func (r *registered) recent(name string, now, every int64) bool {
	h := r.hash(name)
	r.mu.RLock()
	defer r.mu.RUnlock()
	if at, ok := r.cur[h]; ok && now-at < every {
		return true
	}
	at, ok := r.prev[h]
	return ok && now-at < every
}

// add records that name was registered at now.
func (r *registered) add(name string, now, every int64) {
	h := r.hash(name)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cur) >= r.max/2 || now-r.rotated >= every {
		// The old prev is dropped: what it holds was registered before
		// cur started (a whole period ago or more once a period passed).
		r.prev, r.cur, r.rotated = r.cur, make(map[uint64]int64), now
	}
	r.cur[h] = now
}

// clear forgets every name.
func (r *registered) clear() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cur, r.prev = map[uint64]int64{}, nil
}

// len returns the number of entries held (recent or not).
func (r *registered) len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.cur) + len(r.prev)
}
