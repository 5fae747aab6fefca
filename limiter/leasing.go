package limiter

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// leases are a Limiter's leases, one per (key, limit, policy) in use. It is
// safe for concurrent use.
//
// Memory: an entry is dropped by a sweep once its lease has ended for a TTL
// (no fetch under way), by the amortised sweep of MemoryStore, so the table
// holds at most about twice the keys leased within the last two TTLs.
type leases struct {
	denies *denyCache // lease denials, by the tokens the shared bucket lacked; nil: off

	mu         sync.Mutex // protects the fields below
	entries    map[leaseKey]*leaseEntry
	sinceSweep int // calls since the last sweep
	afterSweep int // entries left by the last sweep
}

type leaseKey struct {
	key string
	lim Limit // normalized
	pol LeasePolicy
}

// leaseEntry is this replica's lease on one key.
type leaseEntry struct {
	mu sync.Mutex // protects the fields below
	// tokens are the unused tokens of the current lease, usable before
	// expires (the instant its request was sent plus the TTL, on the
	// Limiter's clock).
	tokens  int64
	expires time.Time
	// granted is what the current lease took; tat and tatRem the state it
	// left in the store, to give its unused tokens back.
	granted     int64
	tat, tatRem int64
	// remaining and reset describe the shared bucket after the current
	// lease, for answers: tokens left there, and when it is full (local clock).
	remaining int64
	fullAt    time.Time
	// fetching is true while one caller fetches the next lease; the
	// callers that need tokens meanwhile queue in waiters, and the fetcher
	// serves them from the new lease in order when it comes, before any
	// newcomer, so that no caller starves.
	fetching bool
	waiters  []*leaseWaiter
	// ends counts the pauses reported through this replica that ended the
	// lease (see leases.end): a fetch under way when one came must not
	// start a lease of its own.
	ends uint64
}

// leaseWaiter is a caller waiting for a lease fetch: the fetcher sends it
// the Result of its cost taken from the new lease (ok) or nothing (!ok:
// the lease lacked the tokens, was refused or failed; the caller decides
// again).
type leaseWaiter struct {
	cost int64
	done chan leaseServed // buffered: the fetcher never blocks
}

type leaseServed struct {
	res Result
	ok  bool
}

func newLeases(denyCacheSize int) *leases {
	t := &leases{entries: make(map[leaseKey]*leaseEntry)}
	if denyCacheSize > 0 {
		t.denies = newDenyCache(denyCacheSize)
	}
	return t
}

func (t *leases) lookupDenial(req Request, now time.Time) (Result, bool) {
	if t.denies == nil {
		return Result{}, false
	}
	return t.denies.lookup(req, now)
}

func (t *leases) rememberDenial(req Request, sent time.Time, res Result) {
	if t.denies != nil {
		t.denies.remember(req, sent, res)
	}
}

// get returns the entry of k, creating it.
func (t *leases) get(k leaseKey, now time.Time) *leaseEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sinceSweep++
	if t.sinceSweep >= max(t.afterSweep, minSweep) {
		t.sweepLocked(now)
	}
	e, ok := t.entries[k]
	if !ok {
		e = &leaseEntry{}
		t.entries[k] = e
	}
	return e
}

// sweepLocked drops the entries whose lease ended at least a TTL ago.
func (t *leases) sweepLocked(now time.Time) {
	for k, e := range t.entries {
		e.mu.Lock()
		idle := !e.fetching && !now.Before(e.expires.Add(k.pol.TTL))
		e.mu.Unlock()
		if idle {
			delete(t.entries, k)
		}
	}
	t.sinceSweep, t.afterSweep = 0, len(t.entries)
}

// end ends this replica's live leases on key at now, for an upstream pause
// reported through this replica: its next call asks the store, which refuses
// it while the pause lasts, and the unused tokens go back with the next
// lease when nothing was taken after them (as for a lease that expired). A
// fetch under way serves its own call but keeps nothing for the next, and
// the lease denials cached for key are dropped (the pause outlasts them).
func (t *leases) end(key string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, e := range t.entries {
		if k.key != key {
			continue
		}
		e.mu.Lock()
		if now.Before(e.expires) {
			e.expires = now
		}
		e.ends++
		e.mu.Unlock()
		if t.denies != nil {
			t.denies.forget(Request{Key: k.key, Limit: k.lim})
		}
	}
}

// len returns the number of entries, for tests.
func (t *leases) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

// takeLocked admits cost from the live lease at now, if it holds that many.
func (e *leaseEntry) takeLocked(cost int64, now time.Time) (Result, bool) {
	if e.tokens < cost || !now.Before(e.expires) {
		return Result{}, false
	}
	e.tokens -= cost
	return e.resultLocked(now), true
}

// resultLocked describes an admission from the lease at now: the tokens left
// in this lease plus those the shared bucket had left after it (an estimate:
// other replicas may have taken some since), and when the shared bucket is
// full, as of this lease.
func (e *leaseEntry) resultLocked(now time.Time) Result {
	return Result{Allowed: true, Remaining: e.tokens + e.remaining, ResetAfter: max(e.fullAt.Sub(now), 0)}
}

// maxLeaseWaits bounds how many lease fetches of other callers one call waits
// for before it fetches the tokens it needs itself.
const maxLeaseWaits = 2

// ErrLeaseLate is the store error of a lease whose reply came after its TTL
// had ended: its tokens cannot be used (they are given back with the next
// lease when nothing was taken after them), and the call is answered by its
// FailurePolicy.
var ErrLeaseLate = errors.New("limiter: lease reply came after the lease ttl")

// acquireLeased decides req, whose Lease is enabled, from this replica's
// lease on the key, fetching a new lease from s when it lacks the tokens.
func (l *Limiter) acquireLeased(ctx context.Context, req Request, s Leaser) (Result, error) {
	k := leaseKey{key: req.Key, lim: req.Limit.Normalized(), pol: req.Lease}
	e := l.leases.get(k, l.now())
	for waits := 0; ; waits++ {
		e.mu.Lock()
		now := l.now()
		if res, ok := e.takeLocked(req.Cost, now); ok {
			e.mu.Unlock()
			return res, nil
		}
		if res, ok := l.leases.lookupDenial(l.leaseNeed(e, req, now), now); ok {
			e.mu.Unlock()
			res.Remaining = min(res.Remaining, req.Cost-1)
			return res, nil
		}
		if !e.fetching {
			return l.fetchLease(ctx, req, e, s, now) // unlocks e.mu
		}
		if waits >= maxLeaseWaits {
			e.mu.Unlock()
			return l.oneOffLease(ctx, req, s)
		}
		w := &leaseWaiter{cost: req.Cost, done: make(chan leaseServed, 1)}
		e.waiters = append(e.waiters, w)
		e.mu.Unlock()
		select {
		case got := <-w.done:
			if got.ok {
				return got.res, nil
			}
		case <-ctx.Done():
			// Tokens the fetcher may give it now are charged to no one.
			return Result{}, ctx.Err()
		}
	}
}

// leaseNeed is req with Cost set to the tokens the shared bucket must lend
// for it at now: its cost less what the live lease holds. Denials are
// remembered and looked up by it. e.mu must be held.
func (l *Limiter) leaseNeed(e *leaseEntry, req Request, now time.Time) Request {
	if now.Before(e.expires) {
		req.Cost -= e.tokens
	}
	return req
}

// fetchLease fetches the next lease of e for req and decides req from it. It
// is called with e.mu held and no fetch under way, and unlocks e.mu.
func (l *Limiter) fetchLease(ctx context.Context, req Request, e *leaseEntry, s Leaser, now time.Time) (Result, error) {
	capacity := req.Lease.LeaseCapacity(req.Limit)
	lr := LeaseRequest{Cost: req.Cost, MaxWait: req.MaxWait, TTL: req.Lease.TTL}
	live := int64(0)
	used := e.granted // of the lease that is ending, for its successor's size
	switch {
	case now.Before(e.expires):
		live = e.tokens // used by this call if the new lease comes
	case !now.Before(e.expires.Add(req.Lease.TTL)):
		// Ended a TTL ago or more (or never leased): start afresh, as
		// after the sweep; unused tokens are left to refill.
		used, e.tokens = 0, 0
	case e.tokens > 0:
		// Expired: its unused tokens go back, if nothing was taken after it.
		lr.GiveBack = LeaseReturn{TAT: e.tat, TATRem: e.tatRem, Tokens: e.tokens}
		used -= e.tokens
		e.tokens = 0
	}
	e.granted = used // the lease has ended, whatever comes next
	lr.Need = req.Cost - live
	lr.Want = max(min(2*used, req.Lease.MaxTokens, capacity), lr.Need)
	e.fetching = true
	ends := e.ends
	e.mu.Unlock()
	sent := now

	g, err := l.lease(ctx, req, s, lr)

	e.mu.Lock()
	defer func() {
		// Serve the callers that queued meanwhile, in order.
		now := l.now()
		for _, w := range e.waiters {
			res, ok := e.takeLocked(w.cost, now)
			w.done <- leaseServed{res, ok}
		}
		e.fetching, e.waiters = false, nil
		e.mu.Unlock()
	}()
	if err != nil {
		// The give-back may or may not have been made; either way its
		// tokens are no longer this lease's.
		return l.leaseFailed(ctx, req, err)
	}
	end := l.now()
	if !g.Allowed {
		l.leases.rememberDenial(l.leaseNeedAt(req, lr), sent, g.Result)
		g.Result.Remaining = min(g.Result.Remaining, req.Cost-1)
		return g.Result, nil
	}
	if g.Wait > 0 {
		// A reservation of the whole cost; the live lease is untouched.
		if !end.Before(sent.Add(req.Lease.TTL)) {
			return l.leaseFailed(ctx, req, ErrLeaseLate)
		}
		return g.Result, nil
	}
	// A lease: this call takes what the old one held and Need of it.
	e.tokens = g.Tokens - lr.Need
	e.expires = sent.Add(req.Lease.TTL)
	e.granted = g.Tokens + live
	e.tat, e.tatRem = g.TAT, g.TATRem
	e.remaining = g.Remaining
	e.fullAt = sent.Add(g.ResetAfter)
	if !end.Before(e.expires) {
		// Too late to use: the whole lease goes back with the next one.
		e.tokens, e.granted = g.Tokens, g.Tokens
		return l.leaseFailed(ctx, req, ErrLeaseLate)
	}
	res := e.resultLocked(end)
	if e.ends != ends {
		// A pause was reported while the lease was on its way: the store
		// lent it before the pause, so this call goes, but the rest goes
		// back with the next lease.
		e.expires = end
	}
	return res, nil
}

// leaseNeedAt is req with Cost set to lr.Need, to remember a lease denial.
func (l *Limiter) leaseNeedAt(req Request, lr LeaseRequest) Request {
	req.Cost = lr.Need
	return req
}

// oneOffLease decides req with a lease of exactly its cost, used at once and
// kept nowhere: for a caller that waited for other callers' fetches long
// enough.
func (l *Limiter) oneOffLease(ctx context.Context, req Request, s Leaser) (Result, error) {
	sent := l.now()
	lr := LeaseRequest{Need: req.Cost, Want: req.Cost, Cost: req.Cost, MaxWait: req.MaxWait, TTL: req.Lease.TTL}
	g, err := l.lease(ctx, req, s, lr)
	if err != nil {
		return l.leaseFailed(ctx, req, err)
	}
	if !g.Allowed {
		l.leases.rememberDenial(req, sent, g.Result)
		return g.Result, nil
	}
	if !l.now().Before(sent.Add(req.Lease.TTL)) {
		return l.leaseFailed(ctx, req, ErrLeaseLate)
	}
	return g.Result, nil
}

// lease is one store round trip for a lease (see storeCall).
func (l *Limiter) lease(ctx context.Context, req Request, s Leaser, lr LeaseRequest) (LeaseGrant, error) {
	return storeCall(l, ctx, func(ctx context.Context) (LeaseGrant, error) { return s.Lease(ctx, req.Key, req.Limit, lr) })
}

// leaseFailed answers req by its FailurePolicy after a lease failed with err.
func (l *Limiter) leaseFailed(ctx context.Context, req Request, err error) (Result, error) {
	if errors.Is(err, ErrLeaseLate) {
		err = fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	return l.fallbackTake(ctx, req, err)
}
