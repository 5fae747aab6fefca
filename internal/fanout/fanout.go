package fanout

import (
	"context"
	"sync"
)

// Set is a set of watchers, each with its own buffered channel.
//
// Publish never blocks: a watcher without room in its buffer is disconnected
// (its channel is closed), so that one slow watcher holds back neither the
// others nor the publisher, and learns that it missed values instead of
// silently losing them.
//
// The zero value is an empty Set, ready to use. It is safe for concurrent use
// and starts no goroutine of its own (a watcher's removal when its context
// ends runs in context.AfterFunc).
type Set[T any] struct {
	mu       sync.Mutex // protects watchers
	watchers map[*watcher[T]]struct{}
}

type watcher[T any] struct {
	ch     chan T
	accept func(T) bool // nil: every value
	stop   func() bool  // stops the context.AfterFunc
}

// Add registers a watcher and returns its channel, of buffer values, which
// holds first to begin with (at most buffer values). The channel receives
// every value published from now on that accept (nil: any) accepts; it is
// closed when ctx ends, on CloseAll, and when the watcher falls behind by a
// whole buffer.
func (s *Set[T]) Add(ctx context.Context, buffer int, accept func(T) bool, first ...T) <-chan T {
	w := &watcher[T]{ch: make(chan T, buffer), accept: accept}
	for _, v := range first {
		w.ch <- v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watchers == nil {
		s.watchers = map[*watcher[T]]struct{}{}
	}
	s.watchers[w] = struct{}{}
	w.stop = context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.removeLocked(w)
	})
	return w.ch
}

// Publish delivers v to every watcher that accepts it. It never blocks: a
// watcher without room in its buffer is disconnected.
func (s *Set[T]) Publish(v T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		if w.accept != nil && !w.accept(v) {
			continue
		}
		select {
		case w.ch <- v:
		default:
			s.removeLocked(w) // behind by a whole buffer: disconnect
		}
	}
}

// CloseAll disconnects every watcher. Add may register new ones afterwards.
func (s *Set[T]) CloseAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		s.removeLocked(w)
	}
}

// Len returns the number of watchers.
func (s *Set[T]) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.watchers)
}

// removeLocked closes w's channel if it is still registered.
func (s *Set[T]) removeLocked(w *watcher[T]) {
	if _, ok := s.watchers[w]; !ok {
		return
	}
	delete(s.watchers, w)
	w.stop()
	close(w.ch)
}
