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
// The call is not bound to any caller's cancellation or deadline (the caller
// of get bounds it, see Cache.Get): a caller giving up must not cut a Redis
// connection mid-reply, nor leave the others without an answer. A follower
// whose ctx ends returns at once; the leader returns when its call ends.
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
	abandoned bool // the leader panicked: nothing was read
}

// get returns the outcome of a store Get of key, made by this caller with
// call or shared with a concurrent caller; shared reports the latter (the
// entry's Value then belongs to the leader and must be copied). It returns
// ctx.Err() when ctx ends while it waits for another caller's call.
func (fs *flights) get(ctx context.Context, key string, call func() (Entry, bool, error)) (out *flight, shared bool, err error) {
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
		fs.lead(key, f, call)
		return f, false, nil
	}
}

// lead makes f's call and ends the flight, even when call panics: the panic
// goes on up the leader's stack, and the callers waiting on f call again
// rather than wait for a result that will never come.
func (fs *flights) lead(key string, f *flight, call func() (Entry, bool, error)) {
	f.abandoned = true // until call returns
	defer func() {
		fs.mu.Lock()
		if fs.m[key] == f {
			delete(fs.m, key)
		}
		fs.mu.Unlock()
		close(f.done)
	}()
	f.entry, f.found, f.err = call()
	f.abandoned = false
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
