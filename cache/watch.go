package cache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/topdeck/resilience/internal/fanout"
	"github.com/topdeck/resilience/internal/repeat"
)

// Defaults of the invalidation watchers of a Cache.
const (
	// DefaultMaxWatchers bounds the Watch channels open on one Cache (so
	// per tenant and replica on the service) unless WithMaxWatchers says
	// otherwise.
	DefaultMaxWatchers = 1024
	// WatchBuffer is how many invalidations a watcher may fall behind by
	// before it is disconnected (its channel closed).
	WatchBuffer = 1024
	// DefaultFeedRetry is the pause before the Cache follows its store's
	// feed again after it broke, unless WithFeedRetry says otherwise
	// (jittered by ±20 %).
	DefaultFeedRetry = 250 * time.Millisecond
)

// ErrTooManyWatchers is returned by Watch when the Cache has its maximum of
// watchers (WithMaxWatchers).
var ErrTooManyWatchers = errors.New("cache: too many invalidation watchers")

// watchers fans the invalidations the Cache follows out to its Watch
// channels. Publish never blocks: a watcher without room is disconnected,
// so that it learns it missed invalidations instead of losing them silently.
// The zero value is not live and has no bound; it is safe for concurrent
// use.
type watchers struct {
	max int // 0: no bound
	set fanout.Set[Invalidation]

	mu     sync.Mutex    // protects the fields below; orders watch with publishLive and setDown
	live   bool          // the Cache follows its feed without a gap
	liveCh chan struct{} // closed when live becomes true; nil: not made yet
}

// watch registers a watcher whose channel starts with an InvalidateAll.
func (ws *watchers) watch(ctx context.Context) (<-chan Invalidation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if !ws.live {
		return nil, fmt.Errorf("%w: watch: the cache is not following its store's invalidations", ErrFeedDown)
	}
	if ws.max > 0 && ws.set.Len() >= ws.max {
		return nil, fmt.Errorf("%w: %d open, the limit", ErrTooManyWatchers, ws.max)
	}
	return ws.set.Add(ctx, WatchBuffer, nil, Invalidation{Kind: InvalidateAll}), nil
}

// publish delivers inv to every watcher, disconnecting those without room.
func (ws *watchers) publish(inv Invalidation) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.set.Publish(inv)
}

// publishLive delivers inv (an InvalidateAll) to the watchers there are,
// then lets watchers join, in one step: one that joins gets only its own
// InvalidateAll.
func (ws *watchers) publishLive(inv Invalidation) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.set.Publish(inv)
	if ws.live {
		return
	}
	ws.live = true
	if ws.liveCh != nil {
		close(ws.liveCh)
	}
}

// setDown stops watchers from joining and disconnects every watcher
// (invalidations are being missed).
func (ws *watchers) setDown() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if !ws.live {
		return
	}
	ws.live = false
	ws.liveCh = nil
	ws.set.CloseAll()
}

// liveChan returns a channel closed once live (already closed when live).
func (ws *watchers) liveChan() <-chan struct{} {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.liveCh == nil {
		ws.liveCh = make(chan struct{})
		if ws.live {
			close(ws.liveCh)
		}
	}
	return ws.liveCh
}

func (ws *watchers) len() int { return ws.set.Len() }

// Watch returns a channel of the invalidations of every write made to the
// store by any Cache sharing it, starting with an InvalidateAll: from it on,
// no write is missed while the channel stays open. The channel is closed
// when ctx ends, when the Cache stops following its store's feed (writes may
// then be missed: drop every copy), and when the watcher falls behind by
// WatchBuffer invalidations. Watch fails with an error wrapping ErrFeedDown
// while the Cache does not follow the feed (Run is not running, the store
// has none, or it broke and is being followed again), and with
// ErrTooManyWatchers at the bound. Expiry is never announced.
func (c *Cache) Watch(ctx context.Context) (<-chan Invalidation, error) {
	return c.watchers.watch(ctx)
}

// Watchers returns the number of open Watch channels.
func (c *Cache) Watchers() int { return c.watchers.len() }

// Following reports whether the Cache follows its store's invalidations
// without a gap (its memory layer, if any, then answers).
func (c *Cache) Following() bool {
	c.watchers.mu.Lock()
	defer c.watchers.mu.Unlock()
	return c.watchers.live
}

// AwaitFollowing waits until the Cache follows its store's invalidations
// (see Following) and returns nil, or returns ctx.Err() when ctx ends first:
// a Cache whose Run has just started subscribes within moments.
func (c *Cache) AwaitFollowing(ctx context.Context) error {
	select {
	case <-c.watchers.liveChan():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// follow follows the store's feed until ctx ends, again after each break.
func (c *Cache) follow(ctx context.Context) {
	q := c.feedRetry / 5
	repeat.Run(ctx, 0, func() time.Duration { return c.feedRetry - q + rand.N(2*q+1) }, func() {
		err := c.feed.Follow(ctx, c.apply)
		c.feedDown()
		if err != nil && ctx.Err() == nil && c.onFeedError != nil {
			c.onFeedError(err)
		}
	})
}

// apply applies one invalidation of the feed: to the memory layer and the
// single flights first, so that a watcher that reads again after it does
// not read an older copy from this Cache, then to the watchers.
func (c *Cache) apply(inv Invalidation) {
	if inv.Kind == InvalidateAll {
		if c.near != nil {
			c.near.SetLive(true)
		}
		c.flights.forgetAll()
		c.watchers.publishLive(inv)
		return
	}
	c.forget(inv)
	c.watchers.publish(inv)
}

// feedDown marks the gap after the feed broke: the memory layer empties and
// stops answering, every watcher is disconnected.
func (c *Cache) feedDown() {
	if c.near != nil {
		c.near.SetLive(false)
	}
	c.watchers.setDown()
}
