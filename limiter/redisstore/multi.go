package redisstore

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/topdeck/resilience/limiter"
)

var (
	_ limiter.MultiStore = (*Store)(nil)
	_ limiter.Pauser     = (*Store)(nil)
)

// multiItemLen is the number of reply elements per limit of multi.lua.
const multiItemLen = 12

// TakeAll implements limiter.MultiStore.
//
// # Atomicity
//
// On one Redis node (any client but a *redis.ClusterClient), or when every
// key is in one hash slot, the decision is one EVALSHA of multi.lua: one
// round trip, atomic. On a Cluster with keys on several slots, the limits
// are grouped by slot and the groups decided one after the other, in a
// fixed order (by their smallest key, keys sorted), each group atomic; when
// a group refuses, the groups already charged are given back
// (giveback.lua) before TakeAll returns, and the later groups are only
// peeked, for their answers. The guarantee:
//
//   - never over-admits: a group charges only what its limits admit, and a
//     give-back lowers a bucket's debt by at most the cost, and at most by
//     what the charge still weighs (how far the state it left is ahead of
//     now), so no refill is credited twice; a bucket untouched since the
//     charge is restored exactly;
//   - a refused call holds nothing once answered: its slots are removed and
//     its tokens given back, exactly when nobody took tokens from the
//     bucket in between, else less by at most the refill that bucket had
//     during the give-back round trip;
//   - a concurrent caller may see those tokens or slots taken during that
//     round trip, and be refused for it;
//   - a give-back that fails (the store failed mid-call) is an error: the
//     tokens refill and the slots expire with their lease by themselves.
//
// With MaxWait, each group reserves for its own latest instant and the call
// waits for the latest of them.
func (s *Store) TakeAll(ctx context.Context, reqs []limiter.Request, o limiter.TakeAllOptions) (limiter.MultiResult, error) {
	if err := limiter.ValidateAll(reqs, o.MaxWait); err != nil {
		return limiter.MultiResult{}, err
	}
	groups := s.groups(reqs)
	if len(groups) == 1 {
		g, err := s.runMulti(ctx, modeTake, reqs, groups[0], o)
		if err != nil {
			return limiter.MultiResult{}, err
		}
		out := limiter.MultiResult{Allowed: true, Results: make([]limiter.Result, len(reqs)), Refused: -1}
		merge(&out, g, reqs)
		out.Queued, out.SlotID = g.Queued, g.SlotID
		if !out.Allowed {
			out.Wait = 0
		}
		return out, nil
	}
	return s.takeAcross(ctx, reqs, groups, o)
}

// PeekAll implements limiter.MultiStore.
func (s *Store) PeekAll(ctx context.Context, reqs []limiter.Request) (limiter.MultiResult, error) {
	if err := limiter.ValidateAll(reqs, 0); err != nil {
		return limiter.MultiResult{}, err
	}
	out := limiter.MultiResult{Allowed: true, Results: make([]limiter.Result, len(reqs)), Refused: -1}
	for _, g := range s.groups(reqs) {
		res, err := s.runMulti(ctx, modePeek, reqs, g, limiter.TakeAllOptions{})
		if err != nil {
			return limiter.MultiResult{}, err
		}
		merge(&out, res, reqs)
	}
	return out, nil
}

// takeAcross decides groups in order, giving back the earlier ones when a
// later one refuses.
func (s *Store) takeAcross(ctx context.Context, reqs []limiter.Request, groups [][]int, o limiter.TakeAllOptions) (limiter.MultiResult, error) {
	out := limiter.MultiResult{Allowed: true, Results: make([]limiter.Result, len(reqs)), Refused: -1}
	var taken []multiReply
	giveBack := func() error {
		for _, t := range taken {
			if err := s.giveBack(ctx, reqs, t, o.SlotID); err != nil {
				return err
			}
		}
		return nil
	}
	for gi, g := range groups {
		mode := modeTake
		if !out.Allowed {
			mode = modePeek
		}
		res, err := s.runMulti(ctx, mode, reqs, g, o)
		if err != nil {
			if gerr := giveBack(); gerr != nil {
				err = fmt.Errorf("%w (and giving back the earlier slots: %v)", err, gerr)
			}
			return limiter.MultiResult{}, err
		}
		if mode == modeTake && res.Allowed {
			taken = append(taken, res.reply(g))
		}
		merge(&out, res, reqs)
		switch {
		case !res.Allowed && mode == modeTake:
			// Queued for this group's slots; a later group refusing too
			// (peeked below) makes waiting pointless.
			out.Queued = res.Queued
			if err := giveBack(); err != nil {
				return limiter.MultiResult{}, err
			}
			taken = nil
		case !res.Allowed:
			out.Queued = false
		}
		_ = gi
	}
	if out.Allowed {
		out.SlotID = o.SlotID
		if !hasSlotsIn(reqs) {
			out.SlotID = ""
		}
		return out, nil
	}
	out.Wait = 0
	out.SlotID = ""
	for i := range out.Results {
		out.Results[i].Wait, out.Results[i].Reservation = 0, limiter.Reservation{}
	}
	return out, nil
}

// merge adds res, the answer of one group, into out.
func merge(out *limiter.MultiResult, res groupResult, reqs []limiter.Request) {
	for i, r := range res.results {
		out.Results[i] = r
		if !r.Allowed && !reqs[i].Shadow && (out.Refused < 0 || r.RetryAfter > out.RetryAfter) {
			out.Refused, out.RetryAfter = i, r.RetryAfter
		}
	}
	if !res.Allowed {
		out.Allowed = false
	}
	out.Wait = max(out.Wait, res.Wait)
}

// groupResult is multi.lua's answer for one group of limits: results by
// request index.
type groupResult struct {
	limiter.MultiResult
	results map[int]limiter.Result
	raw     map[int][]int64 // the reply elements of each limit
}

// multiReply is what a group charged, for giveBack.
type multiReply struct {
	idx []int
	raw map[int][]int64
}

func (g groupResult) reply(idx []int) multiReply { return multiReply{idx: idx, raw: g.raw} }

// groups returns the indexes of reqs grouped by hash slot, each group
// sorted by key and the groups by their first key; one group when the
// client is not a Cluster client.
func (s *Store) groups(reqs []limiter.Request) [][]int {
	idx := make([]int, len(reqs))
	for i := range idx {
		idx[i] = i
	}
	if _, cluster := s.client.(*redis.ClusterClient); !cluster {
		return [][]int{idx}
	}
	sort.Slice(idx, func(a, b int) bool { return reqs[idx[a]].Key < reqs[idx[b]].Key })
	bySlot := map[int]int{}
	var groups [][]int
	for _, i := range idx {
		slot := hashSlot(s.Key(reqs[i].Key))
		g, ok := bySlot[slot]
		if !ok {
			g = len(groups)
			bySlot[slot] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}

// itemKeys returns the five keys of key in multi.lua's order.
func (s *Store) itemKeys(key string) [5]string {
	tag := "{" + key + "}"
	return [5]string{s.prefix + "rl:" + tag, s.prefix + "up:" + tag, s.prefix + "cc:" + tag, s.prefix + "cq:" + tag, s.prefix + "cx:" + tag}
}

// nowArg is the injected clock's reading for a script, "" in production.
func (s *Store) nowArg() string {
	if s.now == nil {
		return ""
	}
	return strconv.FormatInt(s.now().UnixMicro(), 10)
}

// runMulti runs multi.lua once over the requests at idx.
func (s *Store) runMulti(ctx context.Context, mode string, reqs []limiter.Request, idx []int, o limiter.TakeAllOptions) (groupResult, error) {
	keys := make([]string, 0, 5*len(idx))
	args := make([]any, 0, 6+8*len(idx))
	queue := "0"
	if o.Queue {
		queue = "1"
	}
	args = append(args, mode, s.nowArg(), int64(o.MaxWait/time.Microsecond), o.SlotID, queue, int64(limiter.TicketTTL/time.Microsecond))
	for _, i := range idx {
		r := reqs[i]
		k := s.itemKeys(r.Key)
		keys = append(keys, k[:]...)
		var p limiter.Params
		if r.Limit.HasRate() {
			p = r.Limit.Params()
		}
		shadow := "0"
		if r.Shadow {
			shadow = "1"
		}
		args = append(args, p.M, p.W, p.B, r.Cost, r.Slots.MaxInFlight, int64(r.Slots.Lease/time.Microsecond), shadow, r.LeaseReserve())
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	v, err := multiScript.Run(ctx, s.client, keys, args...).Result()
	if err != nil {
		return groupResult{}, fmt.Errorf("redisstore: %s of %d limits: %w: %w", mode, len(idx), limiter.ErrStoreUnavailable, err)
	}
	res, err := decodeMulti(v, reqs, idx, o.SlotID)
	if err != nil {
		return groupResult{}, fmt.Errorf("redisstore: %s of %d limits: %w: %w", mode, len(idx), limiter.ErrStoreUnavailable, err)
	}
	return res, nil
}

// decodeMulti decodes multi.lua's reply for the requests at idx.
func decodeMulti(v any, reqs []limiter.Request, idx []int, slotID string) (groupResult, error) {
	vals, ok := v.([]any)
	if !ok {
		return groupResult{}, fmt.Errorf("malformed reply: got %T, want an array", v)
	}
	if len(vals) != 3+multiItemLen*len(idx) {
		return groupResult{}, fmt.Errorf("malformed reply: got %d elements, want %d", len(vals), 3+multiItemLen*len(idx))
	}
	n := make([]int64, len(vals))
	for i, x := range vals {
		xi, ok := x.(int64)
		if !ok || xi < 0 {
			return groupResult{}, fmt.Errorf("malformed reply: element %d is %v, want an integer >= 0", i, x)
		}
		if xi > maxDurationUS {
			return groupResult{}, fmt.Errorf("malformed reply: element %d is %d, too large", i, xi)
		}
		n[i] = xi
	}
	if n[0] > 1 || n[2] > 1 {
		return groupResult{}, fmt.Errorf("malformed reply: allowed %d, queued %d, want 0 or 1", n[0], n[2])
	}
	g := groupResult{results: map[int]limiter.Result{}, raw: map[int][]int64{}}
	g.Allowed, g.Queued, g.Refused = n[0] == 1, n[2] == 1, -1
	g.Wait = time.Duration(n[1]) * time.Microsecond
	anySlot := false
	for j, i := range idx {
		e := n[3+multiItemLen*j : 3+multiItemLen*(j+1)]
		for _, f := range []int{0, 8, 10, 11} {
			if e[f] > 1 {
				return groupResult{}, fmt.Errorf("malformed reply: flag %d of limit %d is %d", f, j, e[f])
			}
		}
		r := limiter.Result{
			Allowed:    e[0] == 1,
			Remaining:  e[1],
			RetryAfter: time.Duration(e[2]) * time.Microsecond,
			ResetAfter: time.Duration(e[3]) * time.Microsecond,
			Paused:     e[8] == 1,
			InFlight:   e[9],
			SlotsFull:  e[10] == 1,
		}
		if e[11] == 1 {
			if g.Wait > 0 && reqs[i].Limit.HasRate() {
				r.Wait = g.Wait
				r.Reservation = limiter.Reservation{TAT: e[4], TATRem: e[5], Prev: e[6], PrevRem: e[7]}
			}
			if reqs[i].Slots.Enabled() {
				anySlot = true
			}
		}
		g.results[i] = r
		g.raw[i] = e
	}
	if g.Allowed && anySlot {
		g.SlotID = slotID
	}
	return g, nil
}

// giveBack gives back what one group charged (see TakeAll).
func (s *Store) giveBack(ctx context.Context, reqs []limiter.Request, t multiReply, slotID string) error {
	keys := make([]string, 0, 2*len(t.idx))
	args := make([]any, 0, 2+8*len(t.idx))
	args = append(args, s.nowArg(), slotID)
	for _, i := range t.idx {
		r := reqs[i]
		k := s.itemKeys(r.Key)
		keys = append(keys, k[0], k[2])
		e := t.raw[i]
		var p limiter.Params
		if r.Limit.HasRate() && e[11] == 1 {
			p = r.Limit.Params()
		}
		args = append(args, p.M, p.W, p.B, r.Cost, e[4], e[5], e[6], e[7])
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	if err := givebackScript.Run(ctx, s.client, keys, args...).Err(); err != nil {
		return fmt.Errorf("redisstore: give back: %w: %w", limiter.ErrStoreUnavailable, err)
	}
	return nil
}

// ReleaseSlots implements limiter.MultiStore: one release.lua per hash
// slot of keys.
func (s *Store) ReleaseSlots(ctx context.Context, keys []string, id string) (int64, error) {
	reqs := make([]limiter.Request, len(keys))
	for i, k := range keys {
		reqs[i].Key = k
	}
	total := int64(0)
	for _, g := range s.groups(reqs) {
		rk := make([]string, 0, 3*len(g))
		for _, i := range g {
			k := s.itemKeys(keys[i])
			rk = append(rk, k[2], k[3], k[4])
		}
		v, err := releaseScript.Run(ctx, s.client, rk, s.nowArg(), id).Result()
		if err != nil {
			return total, fmt.Errorf("redisstore: release: %w: %w", limiter.ErrStoreUnavailable, err)
		}
		n, ok := v.(int64)
		if !ok || n < 0 {
			return total, fmt.Errorf("redisstore: release: %w: malformed reply %v", limiter.ErrStoreUnavailable, v)
		}
		total += n
	}
	return total, nil
}

// Pause implements limiter.Pauser: one pause.lua.
func (s *Store) Pause(ctx context.Context, key string, lim limiter.Limit, pause time.Duration, remaining int64) (limiter.PauseResult, error) {
	if pause < 0 || pause > limiter.MaxPause {
		return limiter.PauseResult{}, &limiter.InvalidArgumentError{Field: "retry_after", Reason: fmt.Sprintf("must be between 0 and %v, got %v", limiter.MaxPause, pause)}
	}
	var p limiter.Params
	if remaining >= 0 {
		if err := lim.Validate(); err != nil {
			return limiter.PauseResult{}, err
		}
		p = lim.Params()
	} else {
		remaining = -1
	}
	k := s.itemKeys(key)
	v, err := pauseScript.Run(ctx, s.client, []string{k[0], k[1]}, s.nowArg(), int64(pause/time.Microsecond), remaining, p.M, p.W, p.B).Result()
	if err != nil {
		return limiter.PauseResult{}, fmt.Errorf("redisstore: pause %q: %w: %w", key, limiter.ErrStoreUnavailable, err)
	}
	vals, ok := v.([]any)
	if !ok || len(vals) != 2 {
		return limiter.PauseResult{}, fmt.Errorf("redisstore: pause %q: %w: malformed reply %v", key, limiter.ErrStoreUnavailable, v)
	}
	pf, ok1 := vals[0].(int64)
	rem, ok2 := vals[1].(int64)
	if !ok1 || !ok2 || pf < 0 || rem < 0 || pf > maxDurationUS {
		return limiter.PauseResult{}, fmt.Errorf("redisstore: pause %q: %w: malformed reply %v", key, limiter.ErrStoreUnavailable, v)
	}
	return limiter.PauseResult{PausedFor: time.Duration(pf) * time.Microsecond, Remaining: rem}, nil
}

func hasSlotsIn(reqs []limiter.Request) bool {
	for _, r := range reqs {
		if r.Slots.Enabled() {
			return true
		}
	}
	return false
}

// hashSlot is Redis Cluster's slot of key: CRC16 (XMODEM) of its hash tag
// (the part between the first '{' and the next '}', when not empty) or of
// the whole key, mod 16384.
func hashSlot(key string) int {
	if i := indexByte(key, '{'); i >= 0 {
		if j := indexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % 16384)
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
