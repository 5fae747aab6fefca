package limiter

import (
	"context"
	"time"
)

// Store keeps token buckets, one per key, and makes decisions on them
// atomically. Implementations must be safe for concurrent use and must give the
// answers [MemoryStore] gives (package limiter/storetest checks this).
//
// A bucket is identified by its key alone: the limit is passed with every call,
// so a changed limit applies from the next decision on the same bucket.
//
// An error means the store could not decide; it is never a denial. Stores
// validate their input with [ValidateCall] and return its error unchanged.
type Store interface {
	// Take decides whether a call of cost tokens on key may proceed under lim.
	//
	// When the tokens are there now, it takes them and answers Allowed with
	// Wait 0. When they will be there within maxWait, it reserves them (later
	// callers queue behind) and answers Allowed with Wait set to how long the
	// caller must wait before proceeding. Otherwise it answers denied, takes
	// nothing, and RetryAfter says when cost tokens will be there. maxWait 0
	// asks for an immediate answer only.
	Take(ctx context.Context, key string, lim Limit, cost int64, maxWait time.Duration) (Result, error)

	// Peek answers as Take(ctx, key, lim, cost, 0) would at this instant but
	// changes nothing.
	Peek(ctx context.Context, key string, lim Limit, cost int64) (Result, error)
}

// Result is one decision. The zero value is a denial with nothing known.
type Result struct {
	// Allowed reports whether the call may proceed (after Wait).
	Allowed bool
	// Remaining is the number of whole tokens left in the bucket after this
	// decision (0 when a reservation left the bucket in debt).
	Remaining int64
	// RetryAfter is, on a denial, the exact time until cost tokens will be
	// there (if no one else takes them first); 0 when allowed.
	RetryAfter time.Duration
	// ResetAfter is the time until the bucket is full again after this
	// decision.
	ResetAfter time.Duration
	// Wait is, for an allowed reservation, how long the caller must wait
	// before proceeding; 0 otherwise.
	Wait time.Duration
	// Degraded reports that the shared store failed and the decision was made
	// by the Limiter's local fallback store (see AllowLocal).
	Degraded bool
}
