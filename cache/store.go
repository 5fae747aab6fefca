package cache

import (
	"context"
	"errors"
	"time"
)

// Entry is one cached value as a Store returns it.
type Entry struct {
	// Value is the stored bytes. The slice belongs to the caller.
	Value []byte
	// TTL is the time the entry has left to live; zero means the entry
	// has no expiry.
	TTL time.Duration
}

// Store is a cache backend. Implementations must be safe for concurrent use.
//
// Keys are opaque strings; values are opaque bytes. A Store never returns an
// expired entry. Every method returns an error when the backend cannot be
// reached; a missing key is not an error.
type Store interface {
	// Get returns the entry under key and whether it exists.
	Get(ctx context.Context, key string) (Entry, bool, error)
	// Set stores value under key, replacing any previous entry. ttl > 0
	// sets the expiry; ttl <= 0 stores the entry without expiry.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Delete removes the given keys and returns how many existed.
	Delete(ctx context.Context, keys ...string) (int64, error)
	// DeletePattern removes every key that matches the glob pattern (Redis
	// MATCH rules, see Match) and returns how many it removed. It touches
	// only this store's cache keys.
	DeletePattern(ctx context.Context, pattern string) (int64, error)
	// Len returns the number of live entries. It may walk the whole key
	// space: call it for statistics, not on a hot path.
	Len(ctx context.Context) (int64, error)
}

// StatsStore keeps the fleet-wide counters of a cache. A Store that also
// implements StatsStore lets every Cache sharing it report fleet totals;
// both MemoryStore and redisstore.Store implement it. Implementations must
// be safe for concurrent use.
type StatsStore interface {
	// AddStats adds d.Counters to the shared totals. It is idempotent per
	// (d.Source, d.Seq): a batch whose Seq is not above the last one applied
	// for its Source is ignored, so a retried flush never counts twice.
	AddStats(ctx context.Context, d StatsDelta) error
	// LoadStats returns the shared totals.
	LoadStats(ctx context.Context) (Counters, error)
}

// Counters are cache event counts. The zero value is all zeros.
type Counters struct {
	Hits    int64 // Gets that found a value
	Misses  int64 // Gets that found nothing
	Sets    int64 // values stored
	Deletes int64 // keys removed by Delete and DeletePattern
	Errors  int64 // operations answered degraded because the store failed
}

// Add returns the field-wise sum of c and d.
func (c Counters) Add(d Counters) Counters {
	return Counters{
		Hits:    c.Hits + d.Hits,
		Misses:  c.Misses + d.Misses,
		Sets:    c.Sets + d.Sets,
		Deletes: c.Deletes + d.Deletes,
		Errors:  c.Errors + d.Errors,
	}
}

// IsZero reports whether every count is zero.
func (c Counters) IsZero() bool { return c == Counters{} }

// HitRatio returns Hits / (Hits + Misses), or 0 when there were no Gets.
func (c Counters) HitRatio() float64 {
	if n := c.Hits + c.Misses; n > 0 {
		return float64(c.Hits) / float64(n)
	}
	return 0
}

// StatsDelta is one batch of counts flushed by one Cache.
type StatsDelta struct {
	// Source identifies the flushing Cache (random per Cache).
	Source string
	// Seq numbers the batches of one Source, from 1, increasing.
	Seq uint64
	Counters
}

// Sentinel errors. Compare with errors.Is.
var (
	// ErrInvalidArgument is wrapped by every *ArgumentError.
	ErrInvalidArgument = errors.New("cache: invalid argument")
	// ErrStoreUnavailable is wrapped by the store errors the Cache reports
	// in results (GetResult.Err and friends) and by Stats.
	ErrStoreUnavailable = errors.New("cache: store unavailable")
	// ErrEntryTooLarge is returned by MemoryStore.Set for an entry larger
	// than the store's whole byte budget.
	ErrEntryTooLarge = errors.New("cache: entry larger than the memory store")
)

// ArgumentError reports a bad argument; Field names it ("key", "ttl",
// "value", "pattern", or an option name). It wraps ErrInvalidArgument.
type ArgumentError struct {
	Field  string
	Reason string // full sentence after "cache: ", e.g. "key is empty"
}

// Error returns "cache: " followed by the reason.
func (e *ArgumentError) Error() string { return "cache: " + e.Reason }

// Unwrap returns ErrInvalidArgument.
func (e *ArgumentError) Unwrap() error { return ErrInvalidArgument }
