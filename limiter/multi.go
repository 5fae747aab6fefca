package limiter

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// MaxLimitsPerCall is the most limits one AcquireAll decides together.
const MaxLimitsPerCall = 8

// ErrMultiUnsupported is returned by AcquireAll and the slot methods when the
// Limiter's store does not implement MultiStore.
var ErrMultiUnsupported = errors.New("limiter: the store cannot decide several limits at once")

// MultiResult is the all-or-nothing decision on several limits.
type MultiResult struct {
	// Allowed reports whether the call may proceed (after Wait): every
	// enforced limit admitted it, and each was charged. When false, none
	// was charged.
	Allowed bool
	// Results are the limits' own answers, in the order of the requests:
	// each says whether that limit alone admits the call (Allowed), its
	// Remaining, RetryAfter, ResetAfter, InFlight and, when refused by an
	// upstream pause, Paused.
	Results []Result
	// Refused is the index of the enforced limit whose refusal has the
	// longest RetryAfter; -1 when Allowed.
	Refused int
	// RetryAfter is, when refused, the longest RetryAfter of the refusing
	// enforced limits.
	RetryAfter time.Duration
	// Wait is, for an allowed reservation, how long the caller must wait
	// before proceeding: every rate limit was charged for now+Wait.
	Wait time.Duration
	// SlotID identifies the slots the call took, for ReleaseSlots; "" when
	// it took none.
	SlotID string
	// Queued reports, on a refusal, that the only enforced refusals came
	// from full concurrency limits and that the call holds a place in their
	// queues (TakeAllOptions.Queue).
	Queued bool
	// Degraded reports that the decision was made by the local fallback.
	Degraded bool
}

// TakeAllOptions are the options of one MultiStore.TakeAll.
type TakeAllOptions struct {
	// MaxWait is the longest the caller will wait for a reservation of
	// every rate limit (0: answer now).
	MaxWait time.Duration
	// SlotID names the slots the call takes and its place in the slot
	// queues; required when a request has Slots.
	SlotID string
	// Queue asks, when the call is refused only by full concurrency
	// limits, to take (or keep) a place in their first-come-first-served
	// queues, held for TicketTTL: the slot freed next goes to the oldest
	// place.
	Queue bool
}

// MultiStore is implemented by a Store that decides several limits, and
// concurrency limits, atomically ([MemoryStore] and the Redis store do).
// Requests' MaxWait and OnStoreFailure are ignored by the store; of Lease,
// the store keeps the reserve (see Request.LeaseReserve): a leased limit is
// decided per call here, and lends only what a lease could.
type MultiStore interface {
	// TakeAll decides reqs (at most MaxLimitsPerCall, distinct keys) all or
	// nothing: the call is allowed when every request that is not Shadow
	// admits it, within o.MaxWait for the rate limits (all reserved for the
	// same instant, the latest they need); then each of them is charged
	// (tokens taken, a slot held under o.SlotID) and each Shadow request
	// that admits it as well. Otherwise nothing is charged.
	TakeAll(ctx context.Context, reqs []Request, o TakeAllOptions) (MultiResult, error)
	// PeekAll answers as TakeAll with MaxWait 0 would, changing nothing.
	PeekAll(ctx context.Context, reqs []Request) (MultiResult, error)
	// ReleaseSlots gives back the slots id holds on keys and its places in
	// their queues, and returns how many slots were given back.
	ReleaseSlots(ctx context.Context, keys []string, id string) (int64, error)
}

// ValidateAll reports whether reqs can be decided together: 1 to
// MaxLimitsPerCall requests, each valid, with distinct keys, and maxWait
// within every rate limit's bound. Errors are *InvalidArgumentError values;
// IndexedError tells which request.
func ValidateAll(reqs []Request, maxWait time.Duration) error {
	if len(reqs) == 0 || len(reqs) > MaxLimitsPerCall {
		return invalid("limits", "must name 1 to %d limits, got %d", MaxLimitsPerCall, len(reqs))
	}
	for i, r := range reqs {
		r.MaxWait = 0
		if err := r.Validate(); err != nil {
			return &IndexedError{Index: i, Err: err}
		}
		if r.Limit.hasRate() {
			if m := r.Limit.MaxWait(); maxWait > m {
				return &IndexedError{Index: i, Err: invalid("max_wait", "must be at most %v for the limit of %q, got %v", m, r.Key, maxWait)}
			}
		}
		for j := range i {
			if reqs[j].Key == r.Key {
				return &IndexedError{Index: i, Err: invalid("key", "%q is named twice in one call: keys must be distinct", r.Key)}
			}
		}
	}
	if maxWait < 0 {
		return invalid("max_wait", "must not be negative, got %v", maxWait)
	}
	return nil
}

// IndexedError is an error of the request at Index of several.
type IndexedError struct {
	Index int
	Err   error
}

// Error implements error.
func (e *IndexedError) Error() string { return fmt.Sprintf("limits[%d]: %v", e.Index, e.Err) }

// Unwrap returns Err.
func (e *IndexedError) Unwrap() error { return e.Err }

// Poll intervals of a call queued for a slot: it asks again after
// pollMin, doubling up to pollMax, until its MaxWait is over.
const (
	pollMin = 2 * time.Millisecond
	pollMax = 50 * time.Millisecond
)

// AcquireAll decides reqs all or nothing (see MultiStore.TakeAll), at most
// MaxLimitsPerCall requests with distinct keys. The requests' own MaxWait is
// ignored: maxWait bounds the whole call. Rate limits that need a
// reservation are reserved together (hold the call with WaitAll); a call
// refused only by full concurrency limits is queued for a slot, first come
// first served, and AcquireAll holds it, asking again, until it gets one or
// maxWait has passed (then it is refused) or ctx ends (its place is given
// up and ctx.Err() returned).
//
// Store failures follow the requests' policies: Deny when any of them says
// so (an error wrapping ErrStoreUnavailable), else the local fallback
// decides and the result is Degraded.
func (l *Limiter) AcquireAll(ctx context.Context, reqs []Request, maxWait time.Duration) (MultiResult, error) {
	if err := ValidateAll(reqs, maxWait); err != nil {
		return MultiResult{}, err
	}
	ms, ok := l.store.(MultiStore)
	if !ok {
		return MultiResult{}, ErrMultiUnsupported
	}
	o := TakeAllOptions{MaxWait: maxWait, Queue: maxWait > 0}
	if hasSlots(reqs) {
		o.SlotID = NewSlotID()
	}
	var deadline <-chan time.Time
	start := time.Now()
	queued := false
	for poll := pollMin; ; poll = min(2*poll, pollMax) {
		res, err := l.takeAll(ctx, ms, reqs, o)
		if err == nil && !res.Allowed && !res.Queued && queued {
			l.giveUpPlace(ctx, reqs, o.SlotID, res.Degraded)
		}
		if err != nil || res.Allowed || !res.Queued {
			return res, err
		}
		queued = true
		left := maxWait - time.Since(start)
		if left <= 0 {
			l.giveUpPlace(ctx, reqs, o.SlotID, res.Degraded)
			res.Queued = false
			return res, nil
		}
		if deadline == nil {
			t := time.NewTimer(left)
			defer t.Stop()
			deadline = t.C
		}
		t := time.NewTimer(min(poll, left))
		select {
		case <-t.C:
		case <-deadline:
			t.Stop()
			l.giveUpPlace(ctx, reqs, o.SlotID, res.Degraded)
			res.Queued = false
			return res, nil
		case <-ctx.Done():
			t.Stop()
			l.giveUpPlace(ctx, reqs, o.SlotID, res.Degraded)
			return MultiResult{}, ctx.Err()
		}
		o.MaxWait = max(maxWait-time.Since(start), 0)
	}
}

// takeAll is one TakeAll on the store, or on the fallback by policy.
func (l *Limiter) takeAll(ctx context.Context, ms MultiStore, reqs []Request, o TakeAllOptions) (MultiResult, error) {
	return l.decideAll(ctx, ms, reqs, errFallbackNotMulti, func(ctx context.Context, s MultiStore) (MultiResult, error) {
		return s.TakeAll(ctx, reqs, o)
	})
}

// errFallbackNotMulti is takeAll's error when the store failed and the local
// fallback is no MultiStore.
var errFallbackNotMulti = fmt.Errorf("limiter: local fallback cannot decide several limits: %w", ErrMultiUnsupported)

// decideAll runs decide on the store ms, or, when the store fails and the
// requests' policies allow it, on the local fallback (its result Degraded).
// notMulti is the error when the fallback is no MultiStore.
func (l *Limiter) decideAll(ctx context.Context, ms MultiStore, reqs []Request, notMulti error, decide func(context.Context, MultiStore) (MultiResult, error)) (MultiResult, error) {
	res, err := storeCall(l, ctx, func(ctx context.Context) (MultiResult, error) { return decide(ctx, ms) })
	if err == nil {
		return res, nil
	}
	if err := l.classify(ctx, err, policyOf(reqs)); err != nil {
		return MultiResult{}, err
	}
	fb, ok := l.fallback.(MultiStore)
	if !ok {
		return MultiResult{}, notMulti
	}
	res, err = decide(ctx, fb)
	if err != nil {
		return MultiResult{}, fmt.Errorf("limiter: local fallback failed: %w", err)
	}
	res.Degraded = true
	return res, nil
}

// PeekAll answers as AcquireAll with maxWait 0 would, changing nothing.
// Store failures follow the requests' policies, as in AcquireAll.
func (l *Limiter) PeekAll(ctx context.Context, reqs []Request) (MultiResult, error) {
	if err := ValidateAll(reqs, 0); err != nil {
		return MultiResult{}, err
	}
	ms, ok := l.store.(MultiStore)
	if !ok {
		return MultiResult{}, ErrMultiUnsupported
	}
	return l.decideAll(ctx, ms, reqs, ErrMultiUnsupported, func(ctx context.Context, s MultiStore) (MultiResult, error) {
		return s.PeekAll(ctx, reqs)
	})
}

// WaitAll holds the caller of res, an allowed result of AcquireAll for
// reqs, until res.Wait has passed, and returns nil. If ctx ends first, it
// gives back what the call took (CancelAll) and returns ctx.Err().
func (l *Limiter) WaitAll(ctx context.Context, reqs []Request, res MultiResult) error {
	return hold(ctx, res.Wait, func(cctx context.Context) { l.CancelAll(cctx, reqs, res) })
}

// CancelAll gives back what res, an allowed result of AcquireAll for reqs
// whose caller will not proceed, took: each reservation when nothing was
// taken on its bucket after it (see Canceler), and the slots. Best effort:
// what cannot be given back refills (tokens) or expires (slots) by itself.
func (l *Limiter) CancelAll(ctx context.Context, reqs []Request, res MultiResult) {
	if !res.Allowed {
		return
	}
	for i, r := range reqs {
		if i < len(res.Results) && r.Limit.hasRate() {
			rr := res.Results[i]
			rr.Degraded = res.Degraded
			_, _ = l.Cancel(ctx, r, rr)
		}
	}
	if res.SlotID != "" {
		_, _ = l.ReleaseSlots(ctx, slotKeys(reqs), res.SlotID, res.Degraded)
	}
}

// ReleaseSlots gives back the slots id took on keys (and its places in
// their queues) and returns how many were given back: 0 when released
// already or their lease ended. degraded says the slots were taken from the
// local fallback (MultiResult.Degraded). A store failure is an error
// wrapping ErrStoreUnavailable: the slots then expire with their lease.
func (l *Limiter) ReleaseSlots(ctx context.Context, keys []string, id string, degraded bool) (int64, error) {
	if !ValidSlotID(id) {
		return 0, invalid("slot_token", "is not a slot this service issued")
	}
	if len(keys) == 0 || len(keys) > MaxLimitsPerCall {
		return 0, invalid("slot_token", "names %d keys, want 1 to %d", len(keys), MaxLimitsPerCall)
	}
	store := l.store
	if degraded {
		store = l.fallback
	}
	ms, ok := store.(MultiStore)
	if !ok {
		return 0, ErrMultiUnsupported
	}
	if degraded {
		return ms.ReleaseSlots(ctx, keys, id)
	}
	n, err := storeCall(l, ctx, func(ctx context.Context) (int64, error) { return ms.ReleaseSlots(ctx, keys, id) })
	if errors.Is(err, errSkipped) {
		return 0, err
	}
	if err != nil {
		return 0, l.classify(ctx, err, Deny)
	}
	return n, nil
}

// giveUpPlace gives up the queue places of a caller that stops waiting for
// a slot (best effort: a place expires after TicketTTL by itself).
func (l *Limiter) giveUpPlace(ctx context.Context, reqs []Request, id string, degraded bool) {
	if id == "" {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), CancelTimeout)
	defer cancel()
	_, _ = l.ReleaseSlots(cctx, slotKeys(reqs), id, degraded)
}

// Pause tells the store what an upstream answered for key (see Pauser):
// the key is paused fleet-wide for fb's retry time, at most MaxPause, and
// its bucket lowered to fb.Remaining tokens. A store failure is answered by
// policy: under AllowLocal the pause is recorded in the local fallback
// (Degraded), under Deny it is an error wrapping ErrStoreUnavailable.
func (l *Limiter) Pause(ctx context.Context, key string, fb Feedback, policy FailurePolicy) (PauseResult, error) {
	if err := fb.Validate(); err != nil {
		return PauseResult{}, err
	}
	pause, clamped := fb.pauseFor()
	remaining := int64(-1)
	lim := Limit{}
	if fb.HasRemaining && fb.Limit.hasRate() {
		remaining, lim = fb.Remaining, fb.Limit
	}
	ps, ok := l.store.(Pauser)
	if !ok {
		return PauseResult{}, fmt.Errorf("limiter: the store cannot pause a key: %w", ErrMultiUnsupported)
	}
	res, err := storeCall(l, ctx, func(ctx context.Context) (PauseResult, error) { return ps.Pause(ctx, key, lim, pause, remaining) })
	if err == nil {
		res.Clamped = clamped
		l.forgetDenials(key, lim)
		l.endLeases(key, pause)
		return res, nil
	}
	if err := l.classify(ctx, err, policy); err != nil {
		return PauseResult{}, err
	}
	fp, ok := l.fallback.(Pauser)
	if !ok {
		return PauseResult{}, ErrMultiUnsupported
	}
	res, err = fp.Pause(ctx, key, lim, pause, remaining)
	if err != nil {
		return PauseResult{}, fmt.Errorf("limiter: local fallback failed: %w", err)
	}
	res.Clamped, res.Degraded = clamped, true
	l.endLeases(key, pause)
	return res, nil
}

// endLeases ends this replica's leases on key when pause pauses it (see
// leases.end). Other replicas learn of the pause when their leases run out:
// each admits at most what its live lease holds, within one lease TTL.
func (l *Limiter) endLeases(key string, pause time.Duration) {
	if pause > 0 {
		l.leases.end(key, l.now())
	}
}

// forgetDenials drops a cached denial of key under lim, which a pause
// makes too short.
func (l *Limiter) forgetDenials(key string, lim Limit) {
	if l.denies != nil && lim.hasRate() {
		l.denies.forget(Request{Key: key, Limit: lim})
	}
}

func hasSlots(reqs []Request) bool {
	for _, r := range reqs {
		if r.Slots.Enabled() {
			return true
		}
	}
	return false
}

func slotKeys(reqs []Request) []string {
	var keys []string
	for _, r := range reqs {
		if r.Slots.Enabled() {
			keys = append(keys, r.Key)
		}
	}
	return keys
}

// policyOf is Deny when any request says so.
func policyOf(reqs []Request) FailurePolicy {
	for _, r := range reqs {
		if r.OnStoreFailure == Deny {
			return Deny
		}
	}
	return AllowLocal
}
