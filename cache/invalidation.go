package cache

import (
	"context"
	"errors"

	"github.com/topdeck/resilience/internal/enum"
)

// InvalidationKind says what an Invalidation invalidates.
type InvalidationKind uint8

// Kinds of Invalidation.
const (
	// InvalidateAll: anything may have changed (a feed was just subscribed
	// or resubscribed, so writes may have been missed). Drop every entry.
	InvalidateAll InvalidationKind = iota + 1
	// InvalidateSet: the Keys were written.
	InvalidateSet
	// InvalidateDelete: the Keys were deleted.
	InvalidateDelete
	// InvalidatePattern: every key matching Pattern was deleted.
	InvalidatePattern
)

// String returns "all", "set", "delete" or "pattern".
func (k InvalidationKind) String() string {
	return enum.Name("InvalidationKind", k, invalidationKindNames)
}

var invalidationKindNames = []string{InvalidateAll: "all", InvalidateSet: "set", InvalidateDelete: "delete", InvalidatePattern: "pattern"}

// Invalidation names entries that a write changed. Whoever keeps copies of
// entries (a Near) drops the ones it names. Expiry is never announced: a
// copy must not outlive the TTL its read reported.
type Invalidation struct {
	Kind InvalidationKind
	// Keys are the keys written or deleted (InvalidateSet, InvalidateDelete).
	Keys []string
	// Pattern is the DeletePattern glob (InvalidatePattern).
	Pattern string
}

// Covers reports whether inv invalidates key.
func (inv Invalidation) Covers(key string) bool {
	switch inv.Kind {
	case InvalidateSet, InvalidateDelete:
		for _, k := range inv.Keys {
			if k == key {
				return true
			}
		}
		return false
	case InvalidatePattern:
		return Match(inv.Pattern, key)
	}
	return true // InvalidateAll, and anything unknown: drop
}

// Feed is implemented by stores that tell every process sharing them about
// each write, whichever process made it: MemoryStore in process, and
// redisstore.Store over Redis pub/sub. Implementations must be safe for
// concurrent use.
type Feed interface {
	// Follow calls fn with the invalidation of every write made to the
	// store from the moment it first calls fn with an InvalidateAll (the
	// subscription is then in place), until ctx ends (Follow returns nil)
	// or the subscription fails or stops hearing the store (Follow returns
	// an error wrapping ErrFeedDown: writes may have been missed from some
	// moment before it returned). A Follow that gets no subscription
	// returns an error without calling fn. Calls of fn never overlap and
	// come in the order the store announced the writes; fn must not block
	// (it may run on the writer's goroutine). A write's invalidation is announced after the write took
	// effect.
	Follow(ctx context.Context, fn func(Invalidation)) error
}

// ErrFeedDown is wrapped by the errors of a Feed whose subscription failed,
// and by Cache.Watch while the Cache does not follow its store's feed.
var ErrFeedDown = errors.New("cache: invalidation feed down")
