package limiter

import (
	"context"
	"time"
)

// Store keeps token buckets, one per key, and makes decisions on them
// atomically. Implementations must be safe for concurrent use and must give the
// answers [MemoryStore] gives (package limiter/storetest checks this).
//
// # Limit changes
//
// A bucket is identified by its key alone: the limit is passed with every call
// and a bucket remembers the limit (MaxCalls, Window and effective Burst) it
// was last charged under. When a call comes under a different limit (an inline
// limit, a reload, an override), the bucket's state carries over as tokens
// already used: the old debt, the time until the bucket would have been full
// again, divided by the old limit's time per token and rounded up, and never
// more than the new burst. So no limit ever refuses more than a fully drained
// bucket of its own would: a limit of 1 per year used on a key does not stop a
// limit of 10 per minute on the same key for more than six seconds per token.
// Under an unchanged limit nothing is converted.
//
// # Errors
//
// An error means the store could not decide; it is never a denial. Stores
// validate their input with [ValidateCall] and return its error unchanged;
// for a Limit from [NewLimit] that costs a few comparisons, not a second
// parse, so a Store trusts what the Limiter and the server built.
type Store interface {
	// Take decides whether a call of cost tokens on key may proceed under lim.
	//
	// When the tokens are there now, it takes them and answers Allowed with
	// Wait 0. When they will be there within maxWait, it reserves them (later
	// callers queue behind) and answers Allowed with Wait set to how long the
	// caller must wait before proceeding, and Reservation set for
	// [Canceler.Cancel]. Otherwise it answers denied, takes nothing, and
	// RetryAfter says when cost tokens will be there. maxWait 0 asks for an
	// immediate answer only.
	Take(ctx context.Context, key string, lim Limit, cost int64, maxWait time.Duration) (Result, error)

	// Peek answers as Take(ctx, key, lim, cost, 0) would at this instant but
	// changes nothing.
	Peek(ctx context.Context, key string, lim Limit, cost int64) (Result, error)
}

// SelfBounded is implemented by a Store that bounds its own decisions: every
// Take and Peek returns within DecisionBound of being called, the wait for a
// batch slot included, whatever the store's backend does (a hung Redis, a
// full pool). When that bound is at most the Limiter's store timeout
// ([WithStoreTimeout]), the Limiter makes decisions under the caller's
// context as it is: the bound it would add is already kept, and a context
// with a timer of its own costs every decision several allocations. The
// Limiter's other store calls (leases, give-backs, slot releases, pauses)
// keep its timeout either way. A DecisionBound of 0 or less means none.
type SelfBounded interface {
	DecisionBound() time.Duration
}

// Canceler is implemented by a Store that can give back the tokens of a
// reservation whose caller gave up before its Wait was over, as
// x/time/rate's Reservation.Cancel does. [MemoryStore] and the Redis store
// implement it; the Limiter uses it when its store does.
type Canceler interface {
	// Cancel gives back the tokens reserved by res, a Reservation that Take
	// answered on key under lim, if nothing was taken on the bucket since:
	// the bucket's state is then what it was before that Take, as if the
	// reservation had never been made. It reports whether it gave them back;
	// false (with a nil error) when the bucket changed since (someone else
	// took tokens, queued behind it or used another limit), when the bucket
	// is gone, or when res is the zero Reservation. Call it only for a
	// reservation whose caller has not proceeded.
	Cancel(ctx context.Context, key string, lim Limit, res Reservation) (bool, error)
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
	// Reservation identifies the reservation when Wait > 0, for
	// [Canceler.Cancel]; the zero value otherwise.
	Reservation Reservation
	// Degraded reports that the shared store failed and the decision was made
	// by the Limiter's local fallback store (see AllowLocal).
	Degraded bool
	// Paused reports a refusal because the key is paused for its upstream
	// (see Pauser); RetryAfter is then the pause's remaining time.
	Paused bool
	// InFlight is, for a concurrency limit (AcquireAll), the slots held on
	// the key after this decision.
	InFlight int64
	// SlotsFull reports, for a concurrency limit, a refusal because its
	// slots were all held (or promised to callers queued before this one).
	SlotsFull bool
}

// Reservation identifies the tokens one Take reserved: the bucket's TAT (the
// instant it is full again) just after that Take, and the TAT it found, both
// as whole microseconds since the Unix epoch plus a remainder in units of 1/M
// microsecond of the limit's [Params]. Stores fill it in; callers pass it back
// to [Canceler.Cancel] unchanged. The zero value is no reservation. It is a
// plain value, safe to copy.
type Reservation struct {
	TAT, TATRem   int64 // the state the reservation left
	Prev, PrevRem int64 // the state it found (in the same limit's units)
}

// IsZero reports whether r is the zero Reservation (no reservation).
func (r Reservation) IsZero() bool { return r == Reservation{} }

// valid reports whether r can be a reservation made under p: remainders in
// [0, p.m) and the TAT it left after the one it found.
func (r Reservation) valid(p params) bool {
	return !r.IsZero() && r.TATRem >= 0 && r.TATRem < p.m && r.PrevRem >= 0 && r.PrevRem < p.m &&
		(r.Prev < r.TAT || (r.Prev == r.TAT && r.PrevRem < r.TATRem))
}

// Valid reports whether r could have been made under lim (lim must be
// valid): stores check it before they act on a Reservation.
func (r Reservation) Valid(lim Limit) bool { return r.valid(lim.params()) }
