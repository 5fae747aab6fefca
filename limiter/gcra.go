package limiter

import "time"

// bucket is the GCRA state of one key: the theoretical arrival time (TAT), the
// instant the bucket is full again, as tat + rem/p.m microseconds since the
// Unix epoch, and the limit p it was written under. rem is the fraction of a
// microsecond that an emission interval which is not a whole number of
// microseconds leaves over. The zero bucket is a full one.
type bucket struct {
	tat int64  // whole microseconds since the Unix epoch
	rem int64  // 0 <= rem < p.m, in units of 1/p.m microsecond
	p   params // the limit the state was written under
}

// idleAt reports whether the bucket is full at nowUS (its TAT is not ahead).
func (b bucket) idleAt(nowUS int64) bool {
	return b.tat < nowUS || (b.tat == nowUS && b.rem == 0)
}

// debt returns how far the bucket's TAT is ahead of nowUS, in units of 1/p.m
// microsecond of limit p (0 when the bucket is full).
//
// When the bucket was written under another limit, its state carries over as
// tokens used: the old debt in whole tokens of the old limit, rounded up, and
// at most p's burst. So a changed limit never refuses more than a drained
// bucket of its own would; under the same limit nothing is converted.
func (b bucket) debt(nowUS int64, p params) int64 {
	if b.tat < nowUS {
		return 0
	}
	d := (b.tat-nowUS)*b.p.m + b.rem
	if b.p == p {
		return d
	}
	return min(ceilDiv(d, b.p.w), p.b) * p.w
}

// gcra makes one decision on b at now for a call of cost with maxWait. lim,
// cost and maxWait must have passed ValidateCall. commit false is a peek: it
// answers as a take with maxWait 0 would. It returns the new state and whether
// it changed (only an allowed commit changes it).
//
// This is the reference implementation of the arithmetic; the Redis store's
// Lua script mirrors it line for line. All quantities are in units of 1/m
// microsecond ("scaled"): one token is w units, the bucket holds b*w.
func gcra(st bucket, now time.Time, lim Limit, cost int64, maxWait time.Duration, commit bool) (bucket, Result, bool) {
	p := lim.params()
	return gcraStep(st, now.UnixMicro(), p, cost, int64(maxWait/time.Microsecond), commit)
}

func gcraStep(st bucket, nowUS int64, p params, cost, maxWaitUS int64, commit bool) (bucket, Result, bool) {
	debt := st.debt(nowUS, p) // how far the TAT is ahead of now, scaled
	capacity := p.b * p.w
	inc := cost * p.w

	var res Result
	after := debt
	if need := debt + inc - capacity; need <= 0 {
		res.Allowed = true
		after = debt + inc
	} else {
		t := ceilDiv(need, p.m) // microseconds until cost tokens are there
		if commit && t <= maxWaitUS {
			res.Allowed = true
			res.Wait = time.Duration(t) * time.Microsecond
			// Admitted at now+t, whole microseconds: the refill the
			// bucket had no room for before then is not credited.
			after = max(debt, t*p.m) + inc
			res.Reservation = reservation(nowUS, debt, after, p)
		} else {
			res.RetryAfter = time.Duration(t) * time.Microsecond
		}
	}
	res.Remaining, res.ResetAfter = fill(capacity, after, p)
	if !commit || !res.Allowed {
		return st, res, false
	}
	return bucketAt(nowUS, after, p), res, true
}

// bucketAt returns the bucket of limit p whose TAT is d (scaled) after nowUS.
func bucketAt(nowUS, d int64, p params) bucket {
	return bucket{tat: nowUS + d/p.m, rem: d % p.m, p: p}
}

// reservation is what Cancel needs to undo a reservation that moved the TAT
// from debt to after ahead of nowUS (scaled): the TAT it leaves and the one
// it found.
func reservation(nowUS, debt, after int64, p params) Reservation {
	return Reservation{
		TAT: nowUS + after/p.m, TATRem: after % p.m,
		Prev: nowUS + debt/p.m, PrevRem: debt % p.m,
	}
}

// fill returns a Result's Remaining and ResetAfter for a bucket of capacity
// (scaled) whose TAT is after (scaled) ahead of now: its whole tokens left,
// and the time until it is full.
func fill(capacity, after int64, p params) (remaining int64, resetAfter time.Duration) {
	if r := (capacity - after) / p.w; r > 0 {
		remaining = r
	}
	return remaining, time.Duration(ceilDiv(after, p.m)) * time.Microsecond
}

// cancelStep gives back the reservation r on st under p: when st is exactly
// the state r left (same limit, same TAT), it returns the state r found and
// true; otherwise st and false.
func cancelStep(st bucket, p params, r Reservation) (bucket, bool) {
	if !r.valid(p) || st.p != p || st.tat != r.TAT || st.rem != r.TATRem {
		return st, false
	}
	return bucket{tat: r.Prev, rem: r.PrevRem, p: p}, true
}

// ceilDiv is ceil(a/b) for a >= 0, b > 0.
func ceilDiv(a, b int64) int64 {
	return (a + b - 1) / b
}
