package breaker

import (
	"context"
	"fmt"
	"strings"
	"sync"
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
	buffer int

	mu       sync.Mutex // protects the fields below
	watchers map[*hubWatcher]struct{}
	closed   bool
}

type hubWatcher struct {
	prefix string
	ch     chan Event
	stop   func() bool // stops the context.AfterFunc
}

// NewHub returns a Hub whose watchers have a buffer of buffer events
// (DefaultWatchBuffer when buffer <= 0).
func NewHub(buffer int) *Hub {
	if buffer <= 0 {
		buffer = DefaultWatchBuffer
	}
	return &Hub{buffer: buffer, watchers: map[*hubWatcher]struct{}{}}
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
	w := &hubWatcher{prefix: prefix, ch: make(chan Event, h.buffer)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errHubClosed
	}
	h.watchers[w] = struct{}{}
	w.stop = context.AfterFunc(ctx, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.removeLocked(w)
	})
	return w.ch, nil
}

// removeLocked closes w's channel if it is still registered.
func (h *Hub) removeLocked(w *hubWatcher) {
	if _, ok := h.watchers[w]; !ok {
		return
	}
	delete(h.watchers, w)
	w.stop()
	close(w.ch)
}

// Publish delivers e to every watcher whose prefix e.Name starts with (a
// ReasonResync marker, whose Name is empty, to every watcher). It never
// blocks: a watcher without room in its buffer is disconnected.
func (h *Hub) Publish(e Event) {
	all := e.Name == "" && e.Reason == ReasonResync
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers {
		if !all && !strings.HasPrefix(e.Name, w.prefix) {
			continue
		}
		select {
		case w.ch <- e:
		default:
			h.removeLocked(w) // behind by a whole buffer: disconnect
		}
	}
}

// Len returns the number of watchers.
func (h *Hub) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.watchers)
}

// Close closes every watcher's channel; Watch fails afterwards. It is
// idempotent.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for w := range h.watchers {
		h.removeLocked(w)
	}
}

// Announcer is implemented by stores (and Breaker) whose watchers can be sent
// an event that no transition published on the store: the events of
// StateCache.Resync after the store lost its data. The event reaches this
// process's watchers only.
type Announcer interface {
	Announce(e Event)
}
