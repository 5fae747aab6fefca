package limiter

import (
	"context"
	"fmt"
	"time"
)

// LeasePolicy turns on lease mode for a limit: instead of asking the shared
// store for every decision, a Limiter takes tokens from the shared bucket in
// leases of up to MaxTokens, and decides from its lease, locally, until the
// lease runs out or its TTL ends. See the package documentation, "Leases",
// for the model and its exact bounds.
//
// The zero value is lease mode off. A LeasePolicy is a plain value, safe to
// copy and to share between goroutines.
type LeasePolicy struct {
	// MaxTokens is the most tokens one lease takes; 0 turns lease mode off.
	// A replica's first lease on a key takes what its call needs and each
	// next one up to twice what the replica used of the previous one, at
	// most MaxTokens and at most the lease capacity (see LeaseCapacity).
	MaxTokens int64
	// TTL is how long a lease's tokens may be used, counted from before its
	// request was sent. Must be > 0 and a whole number of microseconds when
	// MaxTokens > 0. The shared bucket lends only Burst - rate*TTL of its
	// tokens (the reserve), which is what keeps the fleet within the
	// limit's exact bound; a TTL that leaves no room for one token is
	// invalid.
	TTL time.Duration
}

// Enabled reports whether p turns lease mode on.
func (p LeasePolicy) Enabled() bool { return p.MaxTokens != 0 }

// Validate reports whether p can be used with lim (lim must be valid). The
// zero LeasePolicy is valid. Errors are *InvalidArgumentError values naming
// lease.max_tokens or lease.ttl.
func (p LeasePolicy) Validate(lim Limit) error {
	if !p.Enabled() {
		return nil
	}
	if p.MaxTokens < 0 {
		return invalid("lease.max_tokens", "must be 0 (lease mode off) or more, got %d", p.MaxTokens)
	}
	if p.TTL <= 0 {
		return invalid("lease.ttl", "must be positive when lease.max_tokens is set, got %v", p.TTL)
	}
	if p.TTL%time.Microsecond != 0 {
		return invalid("lease.ttl", "must be a whole number of microseconds, got %v", p.TTL)
	}
	q := lim.params()
	ttlUS := int64(p.TTL / time.Microsecond)
	// The reserve, rate*TTL, must leave room for at least one token:
	// ttl*m <= b*w - w. Compared by division first so that nothing overflows.
	if ttlUS > (q.b*q.w-q.w)/q.m {
		return invalid("lease.ttl", "is too long for %d calls per %v with burst %d: the bucket must keep rate x ttl of its burst in reserve and still lend a token, so ttl must be at most %v, got %v",
			lim.MaxCalls, approx(lim.Window), q.b, time.Duration((q.b*q.w-q.w)/q.m)*time.Microsecond, p.TTL)
	}
	if c := p.capacity(q); p.MaxTokens > c {
		return invalid("lease.max_tokens", "must be at most %d for this limit and ttl (burst %d less rate x ttl, the reserve), got %d", c, q.b, p.MaxTokens)
	}
	return nil
}

// LeaseCapacity is the most tokens the shared bucket of lim lends under p at
// once: burst - rate*TTL, rounded down. It is also the largest cost a call
// can have in lease mode. lim and p must be valid and p enabled.
func (p LeasePolicy) LeaseCapacity(lim Limit) int64 { return p.capacity(lim.params()) }

func (p LeasePolicy) capacity(q params) int64 {
	return (q.b*q.w - p.reserve(q)) / q.w
}

// LeaseReserve is what the shared bucket of r's limit keeps back for r's
// lease policy, rate*TTL in units of 1/m microsecond (see Limit.Params): 0
// when lease mode is off. A store deciding r per call, with other limits
// (MultiStore), lends only the bucket's capacity less this, as a lease
// does, so that per-call decisions never take what leased tokens still in
// use are owed. r must be valid.
func (r Request) LeaseReserve() int64 {
	if !r.Lease.Enabled() || !r.Limit.hasRate() {
		return 0
	}
	return r.Lease.reserve(r.Limit.params())
}

// reserve is rate*TTL in units of 1/q.m microsecond: TTL in µs times m.
func (p LeasePolicy) reserve(q params) int64 {
	return int64(p.TTL/time.Microsecond) * q.m
}

// Leaser is implemented by a Store that lends tokens in leases, for lease
// mode (see LeasePolicy). [MemoryStore] and the Redis store implement it; a
// Limiter whose store does not decides leased limits one call at a time, as
// without lease mode.
type Leaser interface {
	// Lease takes tokens from key's bucket under lim as one atomic
	// decision. First, when req.GiveBack names the state the bucket is
	// still in (nothing was taken on it since that lease, and it is not
	// full), its unused tokens are given back. Then, keeping rate*req.TTL
	// of the bucket's capacity in reserve (never lent): when at least
	// req.Need tokens can be lent now, it takes as many as can be, up to
	// req.Want, and answers Allowed with Tokens set; otherwise, when
	// req.Cost tokens can be reserved within req.MaxWait, it reserves them
	// as Take does (Allowed, Wait and Reservation set, Tokens = Cost);
	// otherwise it answers denied, taking nothing, with RetryAfter the time
	// until Need tokens can be lent. A bucket used under another limit
	// carries its state over as Take's does.
	Lease(ctx context.Context, key string, lim Limit, req LeaseRequest) (LeaseGrant, error)
}

// LeaseRequest is one request for a lease. Check it with
// [ValidateLeaseRequest].
type LeaseRequest struct {
	// Need is the fewest tokens worth lending now: 1 <= Need <= Want.
	Need int64
	// Want is the most tokens to take: Want <= the lease capacity.
	Want int64
	// Cost is what to reserve when Need is not there now but Cost tokens
	// will be within MaxWait: Need <= Cost <= the lease capacity.
	Cost int64
	// MaxWait is as for Take; 0 never reserves.
	MaxWait time.Duration
	// TTL is the policy's TTL: the bucket keeps rate*TTL in reserve.
	TTL time.Duration
	// GiveBack names unused tokens of an earlier lease to give back
	// first; the zero value gives back nothing.
	GiveBack LeaseReturn
}

// LeaseReturn names the unused tokens of a lease: the state that lease left
// in the bucket (its LeaseGrant's TAT and TATRem) and how many of its tokens
// were not used. The zero value names nothing.
type LeaseReturn struct {
	TAT, TATRem int64
	Tokens      int64
}

// LeaseGrant is the answer to a LeaseRequest.
type LeaseGrant struct {
	// Result is the decision as Take would describe it: Allowed,
	// Remaining (whole tokens left in the shared bucket after the lease,
	// the reserve included), RetryAfter (on a denial, until Need tokens
	// can be lent), ResetAfter, and Wait and Reservation for a
	// reservation.
	Result
	// Tokens is how many tokens were taken: between Need and Want for a
	// lease, Cost for a reservation, 0 on a denial.
	Tokens int64
	// TAT and TATRem are the state this lease left in the bucket (0 when
	// nothing was taken), for a later LeaseReturn.
	TAT, TATRem int64
	// GaveBack reports that the tokens of GiveBack were given back.
	GaveBack bool
}

// ValidateLeaseRequest reports whether req can be made under lim: lim valid,
// req.TTL a valid lease TTL for lim, 1 <= Need <= Want, Need <= Cost, Want and
// Cost at most the lease capacity, MaxWait as ValidateCall allows, and a
// well-formed GiveBack. Stores check it and return its error unchanged.
func ValidateLeaseRequest(lim Limit, req LeaseRequest) error {
	if err := lim.Validate(); err != nil {
		return err
	}
	pol := LeasePolicy{MaxTokens: 1, TTL: req.TTL}
	if err := pol.Validate(lim); err != nil {
		return err
	}
	c := pol.LeaseCapacity(lim)
	switch {
	case req.Need < 1 || req.Need > req.Want:
		return invalid("need", "must be between 1 and want (%d), got %d", req.Want, req.Need)
	case req.Want > c:
		return invalid("want", "must be at most the lease capacity (%d), got %d", c, req.Want)
	case req.Cost < req.Need || req.Cost > c:
		return invalid("cost", "must be between need (%d) and the lease capacity (%d), got %d", req.Need, c, req.Cost)
	}
	if max := lim.MaxWait(); req.MaxWait < 0 || req.MaxWait > max {
		return invalid("max_wait", "must be between 0 and %v for this limit, got %v", max, req.MaxWait)
	}
	g := req.GiveBack
	if g.Tokens < 0 || g.Tokens > lim.burst() || g.TATRem < 0 || g.TATRem >= lim.params().m || g.TAT < 0 {
		return invalid("give_back", "is not a lease of this limit: %+v", g)
	}
	return nil
}

// leaseStep makes one lease decision on st at nowUS under p; req has passed
// ValidateLeaseRequest. pauseUS is the key's upstream pause still to run (0:
// none): a paused key lends and reserves nothing, and RetryAfter is the later
// of the pause's end and the need's return, as gcraStep's answer on a paused
// key; a give-back is made all the same. It returns the new state and whether
// it changed. This is the reference for the Redis store's lease.lua, in the
// units of gcraStep.
func leaseStep(st bucket, nowUS int64, p params, req LeaseRequest, pauseUS int64) (bucket, LeaseGrant, bool) {
	var g LeaseGrant
	changed := false
	if gb := req.GiveBack; gb.Tokens > 0 && st.p == p && st.tat == gb.TAT && st.rem == gb.TATRem && !st.idleAt(nowUS) {
		// Nothing was taken since that lease: the bucket is as if it had
		// taken gb.Tokens fewer.
		d := max((st.tat-nowUS)*p.m+st.rem-gb.Tokens*p.w, 0)
		st = bucketAt(nowUS, d, p)
		g.GaveBack, changed = true, true
	}
	pol := LeasePolicy{MaxTokens: 1, TTL: req.TTL}
	debt := st.debt(nowUS, p)
	capacity := p.b * p.w
	lendable := capacity - pol.reserve(p) // what the bucket lends, scaled
	after := debt
	// Microseconds until need can be lent (0: now).
	needUS := ceilDiv(max(debt+req.Need*p.w-lendable, 0), p.m)
	if avail := (lendable - debt) / p.w; pauseUS > 0 {
		g.Paused = true
		g.RetryAfter = time.Duration(max(needUS, pauseUS)) * time.Microsecond
	} else if debt <= lendable && avail >= req.Need {
		g.Allowed = true
		g.Tokens = min(req.Want, avail)
		after = debt + g.Tokens*p.w
	} else {
		// Microseconds until cost can be lent, for a reservation.
		t := ceilDiv(max(debt+req.Cost*p.w-lendable, 0), p.m)
		if t > 0 && t <= int64(req.MaxWait/time.Microsecond) {
			g.Allowed = true
			g.Tokens = req.Cost
			g.Wait = time.Duration(t) * time.Microsecond
			// Admitted at now+t, as gcraStep's reservations.
			after = max(debt, t*p.m) + req.Cost*p.w
			g.Reservation = reservation(nowUS, debt, after, p)
		} else {
			g.RetryAfter = time.Duration(needUS) * time.Microsecond
		}
	}
	g.Remaining, g.ResetAfter = fill(capacity, after, p)
	if g.Allowed {
		st = bucketAt(nowUS, after, p)
		g.TAT, g.TATRem = st.tat, st.rem
		changed = true
	}
	return st, g, changed
}

// String describes p for logs and errors.
func (p LeasePolicy) String() string {
	if !p.Enabled() {
		return "lease off"
	}
	return fmt.Sprintf("lease up to %d tokens for %v", p.MaxTokens, p.TTL)
}
