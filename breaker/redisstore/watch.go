package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/topdeck/resilience/breaker"
)

const (
	// subscribeTimeout bounds the wait for Redis to confirm a Watch subscription.
	subscribeTimeout = 3 * time.Second
	// heartbeatEvery is how often a Watch publishes a heartbeat on its own
	// channel through the client (so to the current master);
	// heartbeatTimeout is how long it goes without receiving one before it
	// subscribes again on a new connection.
	heartbeatEvery   = time.Second
	heartbeatTimeout = 3 * time.Second
)

// wireEvent is the JSON published by the scripts.
type wireEvent struct {
	Name   string `json:"n"`
	From   uint8  `json:"f"`
	To     uint8  `json:"t"`
	Gen    uint64 `json:"g"`
	AtUS   int64  `json:"a"`
	Reason string `json:"r"`
}

// DecodeEvent parses one message of the events channel.
func DecodeEvent(payload string) (breaker.Event, error) {
	var w wireEvent
	if err := json.Unmarshal([]byte(payload), &w); err != nil {
		return breaker.Event{}, fmt.Errorf("%w: event %q: %v", errReply, payload, err)
	}
	from, to := breaker.State(w.From), breaker.State(w.To)
	if !from.Valid() || !to.Valid() {
		return breaker.Event{}, fmt.Errorf("%w: event %q: bad state", errReply, payload)
	}
	return breaker.Event{Name: w.Name, From: from, To: to, Generation: w.Gen, At: time.UnixMicro(w.AtUS), Reason: w.Reason}, nil
}

// errDeaf is the error of Watch while the shared subscription has not heard
// its heartbeat for heartbeatTimeout (Redis unreachable or failing over).
var errDeaf = errors.New("the events subscription has not heard Redis for 3s")

// Watch implements breaker.Store. The first Watch subscribes and returns once
// Redis has confirmed the subscription, so every transition after it is
// seen; later ones join that subscription (one Redis connection for all the
// watchers of the Store), and fail while it does not hear Redis. After a
// reconnection the channel carries an Event with breaker.ReasonResync
// (events may have been missed). A watcher that falls behind by
// breaker.DefaultWatchBuffer events is disconnected: its channel is closed.
// The channel is closed when ctx ends or on Close.
func (s *Store) Watch(ctx context.Context, prefix string) (<-chan breaker.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("%w: watch: store closed", breaker.ErrStoreUnavailable)
	}
	if !s.subscribed {
		if err := s.subscribeLocked(ctx); err != nil {
			return nil, s.fail("watch", prefix, err)
		}
	} else if time.Since(time.Unix(0, s.lastBeat.Load())) > heartbeatTimeout {
		return nil, s.fail("watch", prefix, errDeaf)
	}
	return s.hub.Watch(ctx, prefix)
}

// subscribeLocked subscribes to the events channel and to this Store's
// heartbeat channel, waits for Redis to confirm, and starts the goroutine
// that reads the subscription.
func (s *Store) subscribeLocked(ctx context.Context) error {
	hb := s.Channel() + ":hb:" + strconv.FormatUint(rand.Uint64(), 36)
	ps := s.client.Subscribe(ctx, s.Channel(), hb)
	if _, err := ps.ReceiveTimeout(ctx, subscribeTimeout); err != nil {
		_ = ps.Close()
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.subscribed, s.cancel = true, cancel
	s.lastBeat.Store(time.Now().UnixNano())
	s.wg.Add(1)
	go s.run(runCtx, ps, hb)
	return nil
}

// run publishes the events of ps into the hub until ctx ends. Every
// heartbeatEvery it publishes on hb, its own channel: when no heartbeat has
// come back for heartbeatTimeout, the subscription's connection no longer
// hears the master (after a Sentinel failover that left the old master
// running, go-redis keeps the subscription on it), so it subscribes again on
// a new connection, which reaches the current master; the new subscription
// sends a resync to every watcher.
func (s *Store) run(ctx context.Context, ps *redis.PubSub, hb string) {
	defer s.wg.Done()
	defer func() { _ = ps.Close() }()
	ch := ps.ChannelWithSubscriptions(redis.WithChannelSize(256))
	tick := time.NewTicker(heartbeatEvery)
	defer tick.Stop()
	lastTry := time.Now() // of a subscription: give each heartbeatTimeout to hear one
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if time.Since(time.Unix(0, s.lastBeat.Load())) > heartbeatTimeout && time.Since(lastTry) > heartbeatTimeout {
				_ = ps.Close()
				ps = s.client.Subscribe(ctx, s.Channel(), hb)
				ch = ps.ChannelWithSubscriptions(redis.WithChannelSize(256))
				lastTry = time.Now()
			}
			pctx, cancel := context.WithTimeout(ctx, heartbeatEvery/2)
			_ = s.client.Publish(pctx, hb, "").Err() // a failure shows as a missing heartbeat
			cancel()
		case m, ok := <-ch:
			if !ok {
				return
			}
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind == "subscribe" && m.Channel == s.Channel() {
					s.hub.Publish(breaker.Event{Reason: breaker.ReasonResync})
				}
			case *redis.Message:
				if m.Channel == hb {
					s.lastBeat.Store(time.Now().UnixNano())
					continue
				}
				if e, err := DecodeEvent(m.Payload); err == nil && e.Name != "" {
					s.hub.Publish(e)
				}
			}
		}
	}
}

// Announce implements breaker.Announcer: it delivers e to this Store's
// watchers (in this process only), as if it had come from Redis.
func (s *Store) Announce(e breaker.Event) { s.hub.Publish(e) }

// Close ends every Watch, the subscription and its goroutine, and waits for
// it. It does not close the Redis client. Decisions still work afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	if s.cancel != nil {
		s.cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.hub.Close()
	return nil
}
