package breaker

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/topdeck/resilience/internal/fanout"
)

// DefaultWatchBuffer is the number of events a watcher of a Hub may fall
// behind by before it is disconnected.
const DefaultWatchBuffer = 256

// Hub fans events out to any number of watchers, each with its own prefix
// and buffered channel. The stores use one: a MemoryStore publishes its
// transitions into it, a redisstore.Store the messages of its one Redis
// subscription, so that any number of Watch calls cost one subscription.
//
// Publish never blocks: a watcher whose buffer is full is disconnected (its
// channel is closed), so one slow watcher cannot hold the others or the
// publisher back, and the watcher learns that it missed events instead of
// silently losing them. It may watch again.
//
// Create it with NewHub; the zero value is not usable. It is safe for
// concurrent use and starts no goroutine of its own (a watcher's removal
// when its context ends runs in context.AfterFunc).
type Hub struct {
	buffer   int
	watchers fanout.Set[Event]

	mu     sync.Mutex // protects closed; orders Watch with Close
	closed bool
}

// NewHub returns a Hub whose watchers have a buffer of buffer events
// (DefaultWatchBuffer when buffer <= 0).
func NewHub(buffer int) *Hub {
	if buffer <= 0 {
		buffer = DefaultWatchBuffer
	}
	return &Hub{buffer: buffer}
}

// errHubClosed is returned by Watch after Close.
var errHubClosed = fmt.Errorf("%w: watch: store closed", ErrStoreUnavailable)

// Watch returns a channel of the events published from now on for breakers
// whose names start with prefix, and of every ReasonResync marker. The
// channel is closed when ctx ends, when the hub is closed, or when the
// watcher falls behind by more than the buffer.
func (h *Hub) Watch(ctx context.Context, prefix string) (<-chan Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errHubClosed
	}
	return h.watchers.Add(ctx, h.buffer, func(e Event) bool {
		return (e.Name == "" && e.Reason == ReasonResync) || strings.HasPrefix(e.Name, prefix)
	}), nil
}

// Publish delivers e to every watcher whose prefix e.Name starts with (a
// ReasonResync marker, whose Name is empty, to every watcher). It never
// blocks: a watcher without room in its buffer is disconnected.
func (h *Hub) Publish(e Event) { h.watchers.Publish(e) }

// Len returns the number of watchers.
func (h *Hub) Len() int { return h.watchers.Len() }

// Close closes every watcher's channel; Watch fails afterwards. It is
// idempotent.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	h.watchers.CloseAll()
}

// Announcer is implemented by stores (and Breaker) whose watchers can be sent
// an event that no transition published on the store: the events of
// StateCache.Resync after the store lost its data. The event reaches this
// process's watchers only.
type Announcer interface {
	Announce(e Event)
}
