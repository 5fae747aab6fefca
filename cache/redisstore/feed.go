package redisstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/topdeck/resilience/cache"
)

// Timing of the invalidations subscription.
const (
	// subscribeTimeout bounds the wait for Redis to confirm a subscription.
	subscribeTimeout = 2 * time.Second
	// heartbeatEvery is how often Follow publishes on its own heartbeat
	// channel, to learn that its connection still hears Redis.
	heartbeatEvery = 250 * time.Millisecond
	// heartbeatTimeout is how long Follow goes on without hearing its
	// heartbeat before it gives up (writes may be going unheard).
	heartbeatTimeout = time.Second
)

// Channel returns the pub/sub channel of this Store's invalidations:
// <prefix>cache-invalidations, one per key prefix (so per tenant).
func (s *Store) Channel() string { return s.prefix + "cache-invalidations" }

// Follow implements cache.Feed over Redis pub/sub. It subscribes (one
// connection) to Channel and to a heartbeat channel of its own, calls fn
// with an InvalidateAll once Redis confirmed both, then with every
// invalidation any Store with this prefix published, until ctx ends (it
// returns nil) or the subscription fails: a connection error, or no
// heartbeat heard for heartbeatTimeout (a hung connection, or a Sentinel
// failover that left the subscription on the old master). Then it returns an
// error wrapping cache.ErrFeedDown, and writes may have gone unheard since
// the last heartbeat: call Follow again, and start over from its
// InvalidateAll. fn runs on Follow's goroutine.
func (s *Store) Follow(ctx context.Context, fn func(cache.Invalidation)) error {
	hb := s.Channel() + ":hb:" + strconv.FormatUint(rand.Uint64(), 36)
	ps := s.client.Subscribe(ctx, s.Channel(), hb)
	defer func() { _ = ps.Close() }()
	// A read does not watch its ctx: closing the subscription ends it.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	for confirmed := 0; confirmed < 2; {
		m, err := ps.ReceiveTimeout(ctx, subscribeTimeout)
		if err != nil {
			return feedErr(ctx, "subscribe", err)
		}
		if sub, ok := m.(*redis.Subscription); ok && sub.Kind == "subscribe" {
			confirmed++
		}
	}
	fn(cache.Invalidation{Kind: cache.InvalidateAll})
	heard := time.Now() // the last heartbeat
	nextBeat := heard
	for {
		now := time.Now()
		if now.Sub(heard) > heartbeatTimeout {
			return fmt.Errorf("%w: redisstore: no heartbeat heard for %v", cache.ErrFeedDown, heartbeatTimeout)
		}
		if !now.Before(nextBeat) {
			pctx, cancel := context.WithTimeout(ctx, heartbeatEvery)
			_ = s.client.Publish(pctx, hb, "").Err() // a failure shows as a missing heartbeat
			cancel()
			nextBeat = now.Add(heartbeatEvery)
		}
		m, err := ps.ReceiveTimeout(ctx, max(time.Until(nextBeat), time.Millisecond))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if isTimeout(err) {
				continue
			}
			return feedErr(ctx, "receive", err)
		}
		switch m := m.(type) {
		case *redis.Message:
			if m.Channel == hb {
				heard = time.Now()
				continue
			}
			fn(decodeInvalidation(m.Payload))
		case *redis.Subscription:
			// go-redis subscribed again on a new connection: what was
			// published in between went unheard.
			return fmt.Errorf("%w: redisstore: the subscription was renewed; invalidations may have been missed", cache.ErrFeedDown)
		}
	}
}

func feedErr(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%w: redisstore: %s: %w", cache.ErrFeedDown, op, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// publish announces inv on Channel.
func (s *Store) publish(ctx context.Context, inv cache.Invalidation) error {
	return s.client.Publish(ctx, s.Channel(), encodeInvalidation(inv)).Err()
}

// Invalidation messages: one byte of kind, then for 's' (set) and 'd'
// (delete) each key as a uvarint length and its bytes, for 'p' (pattern) the
// pattern's bytes. Keys are the cache's, without the prefix.
const (
	msgSet     = 's'
	msgDelete  = 'd'
	msgPattern = 'p'
)

func encodeInvalidation(inv cache.Invalidation) string {
	var kind byte
	switch inv.Kind {
	case cache.InvalidateSet:
		kind = msgSet
	case cache.InvalidateDelete:
		kind = msgDelete
	case cache.InvalidatePattern:
		return string(msgPattern) + inv.Pattern
	default:
		return "a"
	}
	n := 1
	for _, k := range inv.Keys {
		n += binary.MaxVarintLen64 + len(k)
	}
	b := make([]byte, 1, n)
	b[0] = kind
	for _, k := range inv.Keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	return string(b)
}

// decodeInvalidation decodes a message of encodeInvalidation. Anything it
// cannot decode is an InvalidateAll: dropping everything is always safe.
func decodeInvalidation(msg string) cache.Invalidation {
	all := cache.Invalidation{Kind: cache.InvalidateAll}
	if msg == "" {
		return all
	}
	switch msg[0] {
	case msgPattern:
		return cache.Invalidation{Kind: cache.InvalidatePattern, Pattern: msg[1:]}
	case msgSet, msgDelete:
	default:
		return all
	}
	inv := cache.Invalidation{Kind: cache.InvalidateSet}
	if msg[0] == msgDelete {
		inv.Kind = cache.InvalidateDelete
	}
	rest := msg[1:]
	for len(rest) > 0 {
		n, w := binary.Uvarint([]byte(rest[:min(len(rest), binary.MaxVarintLen64)]))
		if w <= 0 || n > uint64(len(rest)-w) {
			return all
		}
		inv.Keys = append(inv.Keys, rest[w:w+int(n)])
		rest = rest[w+int(n):]
	}
	return inv
}
