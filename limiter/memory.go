package limiter

import (
	"context"
	"sync"
	"time"
)

// MemoryStore is a [Store] that keeps buckets in process memory. It is exact
// for one process: use it when there is one replica, as the Limiter's local
// fallback, or in tests.
//
// Memory is bounded by the number of busy keys: a bucket is dropped once it is
// full again (its TAT is not ahead of now), by a sweep that runs lazily inside
// Take once the number of decisions since the last sweep reaches the number of
// buckets that sweep left, so its cost is amortised to O(1) per decision and
// at most twice the busy buckets are held. No goroutine is
// started.
//
// Create one with [NewMemoryStore]; the zero value is not usable. A
// MemoryStore is safe for concurrent use.
type MemoryStore struct {
	now func() time.Time

	mu         sync.Mutex // protects the fields below
	buckets    map[string]bucket
	pauses     map[string]int64    // upstream pauses: the end, µs since the epoch
	slots      map[string]*slotSet // concurrency limits' slots and queues
	sinceSweep int                 // decisions since the last sweep
	afterSweep int                 // buckets left by the last sweep
}

var (
	_ Store      = (*MemoryStore)(nil)
	_ Canceler   = (*MemoryStore)(nil)
	_ Leaser     = (*MemoryStore)(nil)
	_ MultiStore = (*MemoryStore)(nil)
	_ Pauser     = (*MemoryStore)(nil)
)

// MemoryOption configures a MemoryStore.
type MemoryOption func(*memoryOptions)

type memoryOptions struct {
	now func() time.Time
}

// WithMemoryClock sets the clock the store reads (default time.Now), for
// tests.
func WithMemoryClock(now func() time.Time) MemoryOption {
	return func(o *memoryOptions) { o.now = now }
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(opts ...MemoryOption) *MemoryStore {
	o := memoryOptions{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	return &MemoryStore{now: o.now, buckets: make(map[string]bucket), pauses: make(map[string]int64), slots: make(map[string]*slotSet)}
}

// minSweep is the fewest decisions between sweeps.
const minSweep = 64

// Take implements Store.
func (s *MemoryStore) Take(ctx context.Context, key string, lim Limit, cost int64, maxWait time.Duration) (Result, error) {
	if err := ValidateCall(lim, cost, maxWait); err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	st, res, changed := gcra(s.buckets[key], now, lim, cost, maxWait, true)
	if left, ok := s.pausedLocked(key, now.UnixMicro()); ok {
		res, changed = pausedResult(s.buckets[key], now, lim, cost, left), false
	}
	if changed {
		s.buckets[key] = st
	}
	s.sinceSweep++
	if s.sinceSweep >= max(s.afterSweep, minSweep) {
		s.sweepLocked(now.UnixMicro())
	}
	return res, nil
}

// Peek implements Store.
func (s *MemoryStore) Peek(ctx context.Context, key string, lim Limit, cost int64) (Result, error) {
	if err := ValidateCall(lim, cost, 0); err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	now := s.now()
	s.mu.Lock()
	st := s.buckets[key]
	left, paused := s.pausedLocked(key, now.UnixMicro())
	s.mu.Unlock()
	_, res, _ := gcra(st, now, lim, cost, 0, false)
	if paused {
		res = pausedResult(st, now, lim, cost, left)
	}
	return res, nil
}

// Cancel implements Canceler.
func (s *MemoryStore) Cancel(ctx context.Context, key string, lim Limit, res Reservation) (bool, error) {
	if err := lim.Validate(); err != nil {
		return false, err
	}
	nowUS, err := s.lockAt(ctx)
	if err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	st, ok := s.buckets[key]
	if !ok {
		return false, nil
	}
	st, ok = cancelStep(st, lim.params(), res)
	if !ok {
		return false, nil
	}
	s.putLocked(key, st, nowUS)
	return true, nil
}

// Lease implements Leaser.
func (s *MemoryStore) Lease(ctx context.Context, key string, lim Limit, req LeaseRequest) (LeaseGrant, error) {
	if err := ValidateLeaseRequest(lim, req); err != nil {
		return LeaseGrant{}, err
	}
	nowUS, err := s.lockAt(ctx)
	if err != nil {
		return LeaseGrant{}, err
	}
	defer s.mu.Unlock()
	pauseUS, _ := s.pausedLocked(key, nowUS)
	st, g, changed := leaseStep(s.buckets[key], nowUS, lim.params(), req, pauseUS)
	if changed {
		s.putLocked(key, st, nowUS)
	}
	return g, nil
}

// lockAt locks s for a step at the current time, unless ctx is done; when
// err is nil the caller holds s.mu and unlocks it.
func (s *MemoryStore) lockAt(ctx context.Context) (nowUS int64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	nowUS = s.now().UnixMicro()
	s.mu.Lock()
	return nowUS, nil
}

// putLocked stores st as key's bucket, or drops it when it is full at nowUS.
func (s *MemoryStore) putLocked(key string, st bucket, nowUS int64) {
	if st.idleAt(nowUS) {
		delete(s.buckets, key)
	} else {
		s.buckets[key] = st
	}
}

// Len returns the number of buckets held, full ones not yet swept included.
func (s *MemoryStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.buckets)
}

// sweepLocked drops the buckets that are full at nowUS.
func (s *MemoryStore) sweepLocked(nowUS int64) {
	for k, b := range s.buckets {
		if b.idleAt(nowUS) {
			delete(s.buckets, k)
		}
	}
	for k, until := range s.pauses {
		if until <= nowUS {
			delete(s.pauses, k)
		}
	}
	for k, set := range s.slots {
		if set.clean(nowUS); set.empty() {
			delete(s.slots, k)
		}
	}
	s.sinceSweep, s.afterSweep = 0, len(s.buckets)
}
