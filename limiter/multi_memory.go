package limiter

import (
	"context"
	"time"
)

// slotSet is one concurrency limit's state: the slots held (id -> lease
// end) and the callers queued for one, oldest first (id -> place expiry).
type slotSet struct {
	leases map[string]int64
	queue  []ticket
}

// ticket is one caller's place in a slot queue.
type ticket struct {
	id        string
	expiresUS int64
}

// clean drops the leases and places that ended at nowUS.
func (s *slotSet) clean(nowUS int64) {
	for id, end := range s.leases {
		if end <= nowUS {
			delete(s.leases, id)
		}
	}
	q := s.queue[:0]
	for _, t := range s.queue {
		if t.expiresUS > nowUS {
			q = append(q, t)
		}
	}
	clear(s.queue[len(q):])
	s.queue = q
}

func (s *slotSet) empty() bool { return len(s.leases) == 0 && len(s.queue) == 0 }

// place takes or refreshes id's place.
func (s *slotSet) place(id string, expiresUS int64) {
	for i := range s.queue {
		if s.queue[i].id == id {
			s.queue[i].expiresUS = expiresUS
			return
		}
	}
	s.queue = append(s.queue, ticket{id: id, expiresUS: expiresUS})
}

// leave drops id's place.
func (s *slotSet) leave(id string) {
	for i, t := range s.queue {
		if t.id == id {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			return
		}
	}
}

// retryUS is the time until the earliest lease ends (at least 1 ms): when a
// slot frees at the latest, if nobody releases one first.
func (s *slotSet) retryUS(nowUS int64) int64 {
	first := int64(0)
	for _, end := range s.leases {
		if first == 0 || end < first {
			first = end
		}
	}
	return max(first-nowUS, 1000)
}

// pausedLocked reports whether key is paused at nowUS and for how long.
func (s *MemoryStore) pausedLocked(key string, nowUS int64) (int64, bool) {
	until, ok := s.pauses[key]
	if !ok || until <= nowUS {
		return 0, false
	}
	return until - nowUS, true
}

// pausedResult is the refusal of a call of cost under lim on st, a paused
// key with leftUS of pause to go: the bucket as it is (nothing taken), and
// RetryAfter the later of the pause's end and the tokens' return (as
// gcra.lua answers).
func pausedResult(st bucket, now time.Time, lim Limit, cost int64, leftUS int64) Result {
	p := lim.params()
	nowUS := now.UnixMicro()
	debt := st.debt(nowUS, p)
	res := Result{Paused: true, RetryAfter: time.Duration(leftUS) * time.Microsecond}
	if need := debt + cost*p.w - p.b*p.w; need > 0 {
		res.RetryAfter = max(res.RetryAfter, time.Duration(ceilDiv(need, p.m))*time.Microsecond)
	}
	if r := (p.b*p.w - debt) / p.w; r > 0 {
		res.Remaining = r
	}
	res.ResetAfter = time.Duration(ceilDiv(debt, p.m)) * time.Microsecond
	return res
}

// multiItem is what one request of a multi decision found.
type multiItem struct {
	p        params
	debt     int64 // scaled, under p
	needUS   int64 // µs until its cost is there (0: now)
	pauseUS  int64 // µs of pause left (0: none)
	set      *slotSet
	inUse    int64
	slotOK   bool
	verdict  bool // this request alone admits the call (at the call's wait)
	refusedR bool // refused by its rate limit
}

// multiStep decides reqs at nowUS on the store's state (s.mu held). It is
// the reference of multi.lua: first every request is read, then the call's
// wait is the latest any enforced rate limit needs, then either every
// enforced request (and every shadow one that admits) is charged, or
// nothing is.
func (s *MemoryStore) multiStepLocked(reqs []Request, nowUS int64, o TakeAllOptions, commit bool) MultiResult {
	items := make([]multiItem, len(reqs))
	maxWaitUS := int64(o.MaxWait / time.Microsecond)
	if !commit {
		maxWaitUS = 0
	}
	waitUS := int64(0)
	for i, r := range reqs {
		it := &items[i]
		if left, ok := s.pausedLocked(r.Key, nowUS); ok {
			it.pauseUS = left
		}
		if r.Limit.hasRate() {
			it.p = r.Limit.params()
			it.debt = s.buckets[r.Key].debt(nowUS, it.p)
			// A leased limit keeps its lease reserve (see LeaseReserve).
			if need := it.debt + r.Cost*it.p.w - (it.p.b*it.p.w - r.LeaseReserve()); need > 0 {
				it.needUS = ceilDiv(need, it.p.m)
			}
		}
		it.slotOK = true
		if r.Slots.Enabled() {
			it.set = s.slots[r.Key]
			if it.set == nil {
				it.set = &slotSet{leases: map[string]int64{}}
			}
			if commit {
				it.set.clean(nowUS)
			}
			it.inUse = it.set.liveAt(nowUS)
			it.slotOK = it.inUse+it.set.aheadAt(o.SlotID, nowUS) < r.Slots.MaxInFlight
		}
		if !r.Shadow && it.needUS <= maxWaitUS {
			waitUS = max(waitUS, it.needUS)
		}
	}
	res := MultiResult{Results: make([]Result, len(reqs)), Refused: -1, Allowed: true}
	onlySlots := true
	for i, r := range reqs {
		it := &items[i]
		it.refusedR = it.needUS > waitUS
		it.verdict = it.pauseUS == 0 && !it.refusedR && it.slotOK
		if !it.verdict && !r.Shadow {
			res.Allowed = false
			if it.pauseUS > 0 || it.refusedR {
				onlySlots = false
			}
		}
	}
	for i, r := range reqs {
		it := &items[i]
		charge := res.Allowed && it.verdict && commit
		out := &res.Results[i]
		out.Allowed = it.verdict
		if r.Limit.hasRate() {
			p := it.p
			after := it.debt
			if charge {
				after = max(it.debt, waitUS*p.m) + r.Cost*p.w
				if waitUS > 0 {
					out.Wait = time.Duration(waitUS) * time.Microsecond
					out.Reservation = reservation(nowUS, it.debt, after, p)
				}
				s.buckets[r.Key] = bucketAt(nowUS, after, p)
			} else if it.verdict && !res.Allowed {
				// Not charged: the tokens it would take are still there.
				after = it.debt
			}
			out.Remaining, out.ResetAfter = fill(p.b*p.w, after, p)
			if it.refusedR {
				out.RetryAfter = time.Duration(it.needUS) * time.Microsecond
			}
		}
		if r.Slots.Enabled() {
			out.InFlight = it.inUse
			if charge {
				it.set.leases[o.SlotID] = nowUS + waitUS + int64(r.Slots.Lease/time.Microsecond)
				it.set.leave(o.SlotID)
				out.InFlight++
				s.slots[r.Key] = it.set
				res.SlotID = o.SlotID
			}
			if !it.slotOK {
				out.SlotsFull = true
				out.RetryAfter = max(out.RetryAfter, time.Duration(it.set.retryUS(nowUS))*time.Microsecond)
			}
		}
		if it.pauseUS > 0 {
			out.Paused = true
			out.RetryAfter = max(out.RetryAfter, time.Duration(it.pauseUS)*time.Microsecond)
		}
		if !it.verdict && !r.Shadow && !res.Allowed && (res.Refused < 0 || out.RetryAfter > res.RetryAfter) {
			res.Refused, res.RetryAfter = i, out.RetryAfter
		}
	}
	if res.Allowed {
		res.Refused, res.RetryAfter = -1, 0
		res.Wait = time.Duration(waitUS) * time.Microsecond
		if commit {
			for i, r := range reqs {
				if r.Slots.Enabled() && items[i].set != nil {
					items[i].set.leave(o.SlotID)
				}
			}
		}
		return res
	}
	if commit && o.Queue && onlySlots && o.SlotID != "" {
		for i, r := range reqs {
			if r.Slots.Enabled() && !r.Shadow && !items[i].slotOK {
				items[i].set.place(o.SlotID, nowUS+int64(TicketTTL/time.Microsecond))
				s.slots[r.Key] = items[i].set
			}
		}
		res.Queued = true
	}
	return res
}

// liveAt counts the leases not ended at nowUS.
func (s *slotSet) liveAt(nowUS int64) int64 {
	n := int64(0)
	for _, end := range s.leases {
		if end > nowUS {
			n++
		}
	}
	return n
}

// aheadAt counts the live places before id's.
func (s *slotSet) aheadAt(id string, nowUS int64) int64 {
	n := int64(0)
	for _, t := range s.queue {
		if t.id == id {
			return n
		}
		if t.expiresUS > nowUS {
			n++
		}
	}
	return n
}

// TakeAll implements MultiStore.
func (s *MemoryStore) TakeAll(ctx context.Context, reqs []Request, o TakeAllOptions) (MultiResult, error) {
	if err := ValidateAll(reqs, o.MaxWait); err != nil {
		return MultiResult{}, err
	}
	if err := checkSlotID(reqs, o.SlotID); err != nil {
		return MultiResult{}, err
	}
	nowUS, err := s.lockAt(ctx)
	if err != nil {
		return MultiResult{}, err
	}
	defer s.mu.Unlock()
	res := s.multiStepLocked(reqs, nowUS, o, true)
	s.sinceSweep++
	if s.sinceSweep >= max(s.afterSweep, minSweep) {
		s.sweepLocked(nowUS)
	}
	return res, nil
}

// PeekAll implements MultiStore.
func (s *MemoryStore) PeekAll(ctx context.Context, reqs []Request) (MultiResult, error) {
	if err := ValidateAll(reqs, 0); err != nil {
		return MultiResult{}, err
	}
	nowUS, err := s.lockAt(ctx)
	if err != nil {
		return MultiResult{}, err
	}
	defer s.mu.Unlock()
	return s.multiStepLocked(reqs, nowUS, TakeAllOptions{}, false), nil
}

// ReleaseSlots implements MultiStore.
func (s *MemoryStore) ReleaseSlots(ctx context.Context, keys []string, id string) (int64, error) {
	nowUS, err := s.lockAt(ctx)
	if err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	n := int64(0)
	for _, k := range keys {
		set, ok := s.slots[k]
		if !ok {
			continue
		}
		if end, ok := set.leases[id]; ok {
			delete(set.leases, id)
			if end > nowUS {
				n++
			}
		}
		set.leave(id)
		if set.empty() {
			delete(s.slots, k)
		}
	}
	return n, nil
}

// Pause implements Pauser.
func (s *MemoryStore) Pause(ctx context.Context, key string, lim Limit, pause time.Duration, remaining int64) (PauseResult, error) {
	if pause < 0 || pause > MaxPause {
		return PauseResult{}, invalid("retry_after", "must be between 0 and %v, got %v", MaxPause, pause)
	}
	if remaining >= 0 {
		if err := lim.Validate(); err != nil {
			return PauseResult{}, err
		}
	}
	nowUS, err := s.lockAt(ctx)
	if err != nil {
		return PauseResult{}, err
	}
	defer s.mu.Unlock()
	var res PauseResult
	if pause > 0 {
		until := nowUS + int64(pause/time.Microsecond)
		if until > s.pauses[key] {
			s.pauses[key] = until
		}
	}
	if left, ok := s.pausedLocked(key, nowUS); ok {
		res.PausedFor = time.Duration(left) * time.Microsecond
	}
	if remaining >= 0 {
		st, r := pauseStep(s.buckets[key], nowUS, lim.params(), remaining)
		s.buckets[key] = st
		res.Remaining = r
	}
	return res, nil
}

// pauseStep lowers st under p to at most remaining tokens at nowUS (never
// raising it) and returns the new state and its whole tokens.
func pauseStep(st bucket, nowUS int64, p params, remaining int64) (bucket, int64) {
	debt := st.debt(nowUS, p)
	capacity := p.b * p.w
	if floor := capacity - min(remaining, p.b)*p.w; debt < floor {
		debt = floor
	}
	return bucketAt(nowUS, debt, p), (capacity - debt) / p.w
}

// checkSlotID requires a valid SlotID when a request has Slots.
func checkSlotID(reqs []Request, id string) error {
	if hasSlots(reqs) && !ValidSlotID(id) {
		return invalid("slot_id", "must be a NewSlotID when a request has a concurrency limit, got %q", id)
	}
	return nil
}
