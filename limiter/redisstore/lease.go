package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/topdeck/resilience/limiter"
)

var _ limiter.Leaser = (*Store)(nil)

// Lease implements limiter.Leaser: one round trip of lease.lua (EVALSHA,
// falling back to EVAL), never batched, under ctx bounded by the Store's
// timeout (WithTimeout). Its errors wrap limiter.ErrStoreUnavailable; a
// Lease whose reply was lost may have taken its tokens, as any Take.
func (s *Store) Lease(ctx context.Context, key string, lim limiter.Limit, req limiter.LeaseRequest) (limiter.LeaseGrant, error) {
	if err := limiter.ValidateLeaseRequest(lim, req); err != nil {
		return limiter.LeaseGrant{}, err
	}
	p := lim.Params()
	now := ""
	if s.now != nil {
		now = strconv.FormatInt(s.now().UnixMicro(), 10)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	g := req.GiveBack
	v, err := leaseScript.Run(ctx, s.client, []string{s.Key(key), s.pauseKey(key)},
		p.M, p.W, p.B, int64(req.TTL/time.Microsecond)*p.M, req.Need, req.Want, req.Cost,
		int64(req.MaxWait/time.Microsecond), g.TAT, g.TATRem, g.Tokens, now).Result()
	if err == nil {
		var grant limiter.LeaseGrant
		if grant, err = decodeLease(v, req); err == nil {
			return grant, nil
		}
	}
	return limiter.LeaseGrant{}, fmt.Errorf("redisstore: lease %q: %w: %w", key, limiter.ErrStoreUnavailable, err)
}

// leaseReplyLen is the length of lease.lua's reply.
const leaseReplyLen = 12

// decodeLease decodes lease.lua's reply {allowed, tokens, remaining,
// retry_after_us, reset_after_us, wait_us, tat, tat_rem, prev, prev_rem,
// gave_back, paused} to req: integers >= 0, allowed, gave_back and paused 0
// or 1 (paused never with allowed), tokens
// within [need, want] for a lease, cost for a reservation and 0 on a denial,
// the state set exactly when tokens were taken, and a reservation exactly
// when wait_us is not 0.
func decodeLease(v any, req limiter.LeaseRequest) (limiter.LeaseGrant, error) {
	var n [leaseReplyLen]int64
	if err := decodeInts(v, "lease reply", n[:]); err != nil {
		return limiter.LeaseGrant{}, err
	}
	if n[0] > 1 || n[10] > 1 || n[11] > 1 || n[0]+n[11] > 1 {
		return limiter.LeaseGrant{}, fmt.Errorf("malformed lease reply: allowed %d, gave_back %d, paused %d, want 0 or 1 and not allowed and paused", n[0], n[10], n[11])
	}
	if err := checkDurationsUS("lease reply", n[:], 3, 5); err != nil {
		return limiter.LeaseGrant{}, err
	}
	allowed, tokens, wait := n[0] == 1, n[1], n[5]
	switch {
	case !allowed && (tokens != 0 || wait != 0):
		return limiter.LeaseGrant{}, fmt.Errorf("malformed lease reply: denied with %d tokens, wait %dµs", tokens, wait)
	case allowed && wait == 0 && (tokens < req.Need || tokens > req.Want):
		return limiter.LeaseGrant{}, fmt.Errorf("malformed lease reply: %d tokens, want between %d and %d", tokens, req.Need, req.Want)
	case allowed && wait > 0 && tokens != req.Cost:
		return limiter.LeaseGrant{}, fmt.Errorf("malformed lease reply: reserved %d tokens, want %d", tokens, req.Cost)
	case allowed == (n[6] == 0 && n[7] == 0):
		return limiter.LeaseGrant{}, fmt.Errorf("malformed lease reply: allowed %v with state %d:%d", allowed, n[6], n[7])
	}
	r := limiter.Reservation{TAT: n[6], TATRem: n[7], Prev: n[8], PrevRem: n[9]}
	if wait == 0 {
		if n[8] != 0 || n[9] != 0 {
			return limiter.LeaseGrant{}, fmt.Errorf("malformed lease reply: no wait but a reservation [%d %d %d %d]", n[6], n[7], n[8], n[9])
		}
		r = limiter.Reservation{}
	}
	g := limiter.LeaseGrant{
		Result: limiter.Result{
			Allowed:     allowed,
			Remaining:   n[2],
			RetryAfter:  time.Duration(n[3]) * time.Microsecond,
			ResetAfter:  time.Duration(n[4]) * time.Microsecond,
			Wait:        time.Duration(wait) * time.Microsecond,
			Reservation: r,
			Paused:      n[11] == 1,
		},
		Tokens:   tokens,
		GaveBack: n[10] == 1,
	}
	if allowed {
		g.TAT, g.TATRem = n[6], n[7]
	}
	return g, nil
}
