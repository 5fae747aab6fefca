package cache

import (
	"context"
	"sync"
)

// flights shares one store Get among concurrent Gets of a key (single
// flight). Unlike golang.org/x/sync/singleflight's DoChan it starts no
// goroutine: the first caller (the leader) makes the store call on its own
// goroutine and stack, which on the service's hot path saves a goroutine
// start, its stack growth through the Redis client and a hand-off per Get.
//
// The leader calls the store with its own ctx, so it returns as soon as the
// store notices that ctx is done. A flight whose leader left that way did
// not read the store: its followers do not take its error as a store
// failure, they start (or join) another flight instead.
type flights struct {
	mu sync.Mutex // protects m
	m  map[string]*flight
}

// flight is one store Get. Its fields are written by the leader before done
// is closed and only read after.
type flight struct {
	done      chan struct{}
	entry     Entry
	found     bool
	err       error
	abandoned bool // the leader's ctx ended the call, or it panicked: nothing was read
}

// get returns the outcome of a store Get of key, made by this caller or
// shared with a concurrent one; shared reports the latter (the entry's
// Value then belongs to the leader and must be copied). It returns
// ctx.Err() when ctx ends first.
func (fs *flights) get(ctx context.Context, key string, call func(context.Context) (Entry, bool, error)) (out *flight, shared bool, err error) {
	for {
		fs.mu.Lock()
		if f, ok := fs.m[key]; ok {
			fs.mu.Unlock()
			select {
			case <-ctx.Done():
				return nil, false, ctx.Err()
			case <-f.done:
			}
			if f.abandoned {
				continue
			}
			return f, true, nil
		}
		f := &flight{done: make(chan struct{})}
		if fs.m == nil {
			fs.m = map[string]*flight{}
		}
		fs.m[key] = f
		fs.mu.Unlock()

		fs.lead(ctx, key, f, call)
		if f.abandoned {
			return nil, false, ctx.Err()
		}
		return f, false, nil
	}
}

// lead makes f's call and ends the flight, even when call panics: the panic
// goes on up the leader's stack, and the callers waiting on f call again
// rather than wait for a result that will never come.
func (fs *flights) lead(ctx context.Context, key string, f *flight, call func(context.Context) (Entry, bool, error)) {
	f.abandoned = true // until call returns
	defer func() {
		fs.mu.Lock()
		if fs.m[key] == f {
			delete(fs.m, key)
		}
		fs.mu.Unlock()
		close(f.done)
	}()
	f.entry, f.found, f.err = call(ctx)
	f.abandoned = f.err != nil && ctx.Err() != nil
}

// forget makes Gets that start after it return start a new flight for key;
// a flight in progress goes on for the callers already waiting on it.
func (fs *flights) forget(key string) {
	fs.mu.Lock()
	delete(fs.m, key)
	fs.mu.Unlock()
}

// forgetAll is forget for every key.
func (fs *flights) forgetAll() {
	fs.mu.Lock()
	clear(fs.m)
	fs.mu.Unlock()
}
