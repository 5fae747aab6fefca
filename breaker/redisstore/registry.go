package redisstore

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/topdeck/resilience/breaker"
)

// register puts name in the registry (for List) and sets its marker key to
// expire after IdleTTL + refreshEvery. A Store does it the first time it
// sees a name and again each refreshEvery while it keeps using it, so the
// marker outlives the last use by at least IdleTTL; Prune drops the names
// whose marker and state have both expired. The marker is written first, and
// the registry entry only once Redis has confirmed it (two round trips, not a
// pipeline, which Cluster may run on two nodes in either order): Prune relies
// on that order.
func (s *Store) register(ctx context.Context, name string) error {
	now := s.clock().UnixNano()
	every := int64(s.refreshEvery())
	if s.seen.recent(name, now, every) {
		return nil
	}
	if err := s.client.Set(ctx, s.markerKey(name), "1", s.idleTTL+time.Duration(every)).Err(); err != nil {
		return err
	}
	if err := s.client.ZAddNX(ctx, s.registryKey(), redis.Z{Member: name}).Err(); err != nil {
		return err
	}
	s.seen.add(name, now, every)
	return nil
}

// prunePage is how many registry names Prune checks per round trip.
const prunePage = 500

// Prune removes from the registry the names of breakers that are gone: no
// state key (it expired IdleTTL after the breaker's last write, or it never
// had one) and no marker (no Store registered the name within IdleTTL). It
// walks the whole registry, prunePage names per round trip, and returns how
// many names it removed.
//
// With every > 0 it first takes a lock for that long, so that of all the
// replicas calling it on a schedule one prunes per period; when another
// holds the lock it returns (0, false, nil). ran reports whether it walked
// the registry.
//
// A name registered while Prune runs is never lost: Prune removes the names
// it found gone, checks them again and puts back those that came back in
// between (register writes the marker before the registry entry).
func (s *Store) Prune(ctx context.Context, every time.Duration) (removed int, ran bool, err error) {
	if every > 0 {
		ok, err := s.client.SetNX(ctx, s.pruneLockKey(), "1", every).Result()
		if err != nil {
			return 0, false, s.fail("prune", "", err)
		}
		if !ok {
			return 0, false, nil
		}
	}
	lo := "-"
	for {
		names, err := s.client.ZRangeByLex(ctx, s.registryKey(), &redis.ZRangeBy{Min: lo, Max: "+", Count: prunePage}).Result()
		if err != nil {
			return removed, true, s.fail("prune", "", err)
		}
		if len(names) == 0 {
			return removed, true, nil
		}
		n, err := s.prunePage(ctx, names)
		removed += n
		if err != nil {
			return removed, true, s.fail("prune", "", err)
		}
		if len(names) < prunePage {
			return removed, true, nil
		}
		lo = "(" + names[len(names)-1]
	}
}

// prunePage removes the gone names among names and returns how many.
func (s *Store) prunePage(ctx context.Context, names []string) (int, error) {
	gone, err := s.gone(ctx, names)
	if err != nil || len(gone) == 0 {
		return 0, err
	}
	members := make([]any, len(gone))
	for i, n := range gone {
		members[i] = n
	}
	if err := s.client.ZRem(ctx, s.registryKey(), members...).Err(); err != nil {
		return 0, err
	}
	still, err := s.gone(ctx, gone)
	if err != nil {
		return 0, err
	}
	if back := len(gone) - len(still); back > 0 {
		isGone := make(map[string]bool, len(still))
		for _, n := range still {
			isGone[n] = true
		}
		zs := make([]redis.Z, 0, back)
		for _, n := range gone {
			if !isGone[n] {
				zs = append(zs, redis.Z{Member: n})
			}
		}
		if err := s.client.ZAddNX(ctx, s.registryKey(), zs...).Err(); err != nil {
			return 0, err
		}
	}
	return len(still), nil
}

// gone returns the names among names that have neither a state key nor a
// marker, with one EXISTS per name (both keys share the name's hash tag) in
// one pipeline.
func (s *Store) gone(ctx context.Context, names []string) ([]string, error) {
	cmds := make([]*redis.IntCmd, len(names))
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, n := range names {
			base := s.keyBase(n)
			cmds[i] = p.Exists(ctx, base+"s", base+"r")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for i, c := range cmds {
		if c.Val() == 0 {
			out = append(out, names[i])
		}
	}
	return out, nil
}

// prefixEnd returns the exclusive ZRANGEBYLEX upper bound of names starting
// with prefix ("+" when every name does).
func prefixEnd(prefix string) string {
	b := []byte(prefix)
	for len(b) > 0 && b[len(b)-1] == 0xff {
		b = b[:len(b)-1]
	}
	if len(b) == 0 {
		return "+"
	}
	b[len(b)-1]++
	return "(" + string(b)
}

// List implements breaker.Store: ZRANGEBYLEX on the registry, then one
// pipelined status.lua per name with the settings stored in each breaker.
func (s *Store) List(ctx context.Context, prefix string, pageSize int, pageToken string) ([]breaker.Status, string, error) {
	size, err := breaker.NormalizePageSize(pageSize)
	if err != nil {
		return nil, "", err
	}
	after, err := breaker.DecodePageToken(pageToken)
	if err != nil {
		return nil, "", err
	}
	lo := "-"
	if prefix != "" {
		lo = "[" + prefix
	}
	if pageToken != "" && after >= prefix {
		lo = "(" + after
	}
	names, err := s.client.ZRangeByLex(ctx, s.registryKey(), &redis.ZRangeBy{
		Min: lo, Max: prefixEnd(prefix), Count: int64(size + 1),
	}).Result()
	if err != nil {
		return nil, "", s.fail("list", prefix, err)
	}
	next := ""
	if len(names) > size {
		names = names[:size]
		next = breaker.EncodePageToken(names[size-1])
	}
	if len(names) == 0 {
		return nil, next, nil
	}
	out, err := s.statuses(ctx, names)
	if err != nil {
		return nil, "", s.fail("list", prefix, err)
	}
	return out, next, nil
}

// statuses runs status.lua for names in one pipeline of EVALSHAs, recovered
// from NOSCRIPT by redisscript.
func (s *Store) statuses(ctx context.Context, names []string) ([]breaker.Status, error) {
	cmds := make([]*redis.Cmd, len(names))
	for i, n := range names {
		cmds[i] = statusScript.Cmd(ctx, s.keys(n), s.nowArg(), "", 0, n, s.Channel())
	}
	statusScript.Exec(ctx, s.client, s.client, cmds)
	out := make([]breaker.Status, len(names))
	for i, c := range cmds {
		v, err := c.Result()
		if err != nil {
			return nil, err
		}
		st, cfg, err := decodeStatus(names[i], v)
		if err != nil {
			return nil, err
		}
		if st.Settings, err = decodeSettings(cfg); err != nil {
			return nil, err
		}
		out[i] = st
	}
	return out, nil
}
