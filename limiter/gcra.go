package limiter

import "time"

// bucket is the GCRA state of one key: the theoretical arrival time (TAT), the
// instant the bucket is full again, as tat + rem/m microseconds since the Unix
// epoch. rem is the fraction of a microsecond that an emission interval which
// is not a whole number of microseconds leaves over; m is the (reduced)
// MaxCalls it is counted in. The zero bucket is a full one.
type bucket struct {
	tat int64 // whole microseconds since the Unix epoch
	rem int64 // 0 <= rem < m, in units of 1/m microsecond
	m   int64
}

// idleAt reports whether the bucket is full at nowUS (its TAT is not ahead).
func (b bucket) idleAt(nowUS int64) bool {
	return b.tat < nowUS || (b.tat == nowUS && b.rem == 0)
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
	if st.m != p.m && st.m != 0 {
		// The limit changed since the state was written: round the TAT up
		// to a whole microsecond (never admits more than the bound).
		if st.rem > 0 {
			st.tat++
		}
		st.rem = 0
	}
	var debt int64 // how far the TAT is ahead of now, scaled
	if st.tat >= nowUS {
		debt = (st.tat-nowUS)*p.m + st.rem
	}
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
		} else {
			res.RetryAfter = time.Duration(t) * time.Microsecond
		}
	}
	if r := (capacity - after) / p.w; r > 0 {
		res.Remaining = r
	}
	res.ResetAfter = time.Duration(ceilDiv(after, p.m)) * time.Microsecond
	if !commit || !res.Allowed {
		return st, res, false
	}
	return bucket{tat: nowUS + after/p.m, rem: after % p.m, m: p.m}, res, true
}

// ceilDiv is ceil(a/b) for a >= 0, b > 0.
func ceilDiv(a, b int64) int64 {
	return (a + b - 1) / b
}
