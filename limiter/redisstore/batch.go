package redisstore

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/topdeck/resilience/limiter"
)

// call is one decision on its way through a batch. Calls are reused
// through Store.calls; argv points into the call's own fields, so that
// building a decision boxes nothing.
type call struct {
	mode     string    // "take" or "peek"
	key      string    // the caller's key, for error messages
	rkey     string    // the bucket's Redis key
	pkey     string    // the key's upstream pause (see gcra.lua)
	nums     [5]int64  // m w b cost max_wait (see gcra.lua)
	now      string    // FOR TESTS ONLY: the injected clock, else ""
	deadline time.Time // the caller's deadline; zero when it has none
	bound    time.Time // when the call must be over: asked for + batcher.timeout

	// argv is the call's EVALSHA command alone (see commandLine): evalsha
	// sha 2 rkey pkey m w b cost max_wait mode now, with pointers to the
	// fields above (go-redis writes *string and *int64 as their values).
	argv []any

	// wake receives at most one signal per use, true to lead the next batch
	// or false when res and err are set. It is buffered, so the sender never
	// blocks, even for a caller that has given up.
	wake chan bool

	state callState // protected by batcher.mu

	// res and err are written by the leader before it sets state to
	// stateDone (under batcher.mu) and signals wake.
	res limiter.Result
	err error
}

// callState is where a call is; it changes only under batcher.mu.
type callState uint8

const (
	stateQueued    callState = iota // in batcher.queue
	stateLeading                    // chosen to lead the next batch
	stateSent                       // in a batch being executed
	stateDone                       // res and err set
	stateAbandoned                  // its caller returned early; never executed
)

// execFunc executes one batch: it sets res and err of every call in batch.
// ctx is the batch's own context, which no caller can cancel.
type execFunc func(ctx context.Context, batch []*call)

// batcher groups concurrent decisions into batches, up to maxInFlight
// batches in flight at a time, without a goroutine of its own ("leader
// batching"): a caller that finds fewer than maxInFlight batches in flight
// leads one, taking up to maxBatch queued calls; callers that arrive while
// all the slots are taken queue up, and when a batch ends the oldest of them
// leads the next. Each caller waits for its own result or its own context.
//
// Several batches in flight keep the Redis connection pool busy while one
// batch's round trip is under way; one alone would make every caller wait
// for the batch before its own.
//
// A caller that starts a batch yields once (runtime.Gosched) before it takes
// the queue, and while it does, newcomers queue behind it rather than lead
// batches of their own: gRPC starts the handlers of one read from a
// connection together, and without the yield each of the first ones would
// lead a batch of one. The yield costs the leader a turn of the scheduler
// (nothing when nothing else is runnable) and, under load, nearly doubles
// the decisions per round trip (docs/benchmarks.md).
//
// Every call is over within timeout of being asked for, the wait for a
// batch slot included, with no timer of its own: a batch's deadline is at
// most the earliest bound (asked for + timeout) of its calls, and the
// batches ahead of a queued call hold calls asked for before it, so they are
// over by its bound too. That holds when exec returns by its context's
// deadline.
//
// A batcher is safe for concurrent use. The zero value is not usable.
type batcher struct {
	exec        execFunc
	maxBatch    int
	maxInFlight int // 0 means 1
	timeout     time.Duration

	mu        sync.Mutex // protects the fields below
	leaders   int        // batches being led
	gathering int        // leaders yielding before they take the queue (see do)
	queue     []*call    // waiting for a batch, oldest first; may hold abandoned calls
}

// batches recycles the leaders' batch slices.
var batches = sync.Pool{New: func() any { s := make([]*call, 0, DefaultMaxBatch); return &s }}

// busy reports whether no more batch may start now: every slot is taken,
// or a leader is gathering the calls that arrive with it. b.mu must be held.
func (b *batcher) busyLocked() bool {
	return b.gathering > 0 || b.leaders >= max(b.maxInFlight, 1)
}

// do decides c, batched with whatever other decisions are waiting. It
// returns ctx.Err() as soon as ctx ends, except in the caller that is
// sending the batch, which returns when the batch's round trip ends (bounded
// by the batch context's deadline) with its own decision.
//
// reuse reports that the batcher is done with c; when false, a leader may
// still write to c (or find it in the queue), and c must not be reused.
func (b *batcher) do(ctx context.Context, c *call) (res limiter.Result, err error, reuse bool) {
	if err := ctx.Err(); err != nil {
		return limiter.Result{}, err, true
	}
	c.deadline = time.Time{}
	if d, ok := ctx.Deadline(); ok {
		c.deadline = d
	}
	c.bound = time.Now().Add(b.timeout)
	b.mu.Lock()
	if !b.busyLocked() {
		b.leaders++
		b.gathering++
		c.state = stateLeading
		b.mu.Unlock()
		runtime.Gosched() // let the calls that came with this one queue (see batcher)
		b.lead(ctx, c, true)
		return c.res, callErr(ctx, c), true
	}
	c.state = stateQueued
	b.queue = append(b.queue, c)
	b.mu.Unlock()

	select {
	case lead := <-c.wake:
		if !lead {
			return c.res, callErr(ctx, c), true
		}
		if err := ctx.Err(); err != nil {
			// Chosen to lead but no longer wanted: pass the lead on.
			b.mu.Lock()
			c.state = stateAbandoned
			b.leaders--
			b.handOffLocked()
			b.mu.Unlock()
			return limiter.Result{}, err, true
		}
		b.lead(ctx, c, false)
		return c.res, callErr(ctx, c), true
	case <-ctx.Done():
		b.mu.Lock()
		defer b.mu.Unlock()
		switch c.state {
		case stateDone:
			<-c.wake                  // sent with the state change: empty it for reuse
			return c.res, c.err, true // decided anyway: the truth beats the error
		case stateLeading:
			c.state = stateAbandoned
			b.leaders--
			b.handOffLocked()
			<-c.wake // the lead signal, sent with the state change
			return limiter.Result{}, ctx.Err(), true
		case stateQueued:
			// The leader will skip it, so it is never executed, but the queue
			// still holds it.
			c.state = stateAbandoned
			return limiter.Result{}, ctx.Err(), false
		default: // stateSent
			// Redis may still execute the decision; the leader will write
			// its result, which nobody reads.
			return limiter.Result{}, ctx.Err(), false
		}
	}
}

// callErr is the error of a caller's call c: when its batch failed after the
// caller's deadline had passed (a batch's deadline is at most its latest
// caller's), the caller's deadline is the cause, even if ctx's timer has not
// fired yet.
func callErr(ctx context.Context, c *call) error {
	if c.err == nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return c.err
}

// errBatchAborted is the error of the calls of a batch whose execution
// panicked.
var errBatchAborted = fmt.Errorf("redisstore: batch aborted: %w", limiter.ErrStoreUnavailable)

// lead collects a batch behind first (which the caller owns and which is in
// state stateLeading), executes it, delivers the results and hands the lead
// on, even if exec panics. gathered says that the caller was counted in
// b.gathering; once it has taken its batch, a call left in the queue (past
// maxBatch) leads the next batch if a slot is free.
func (b *batcher) lead(ctx context.Context, first *call, gathered bool) {
	bp := batches.Get().(*[]*call)
	b.mu.Lock()
	batch := append((*bp)[:0], first)
	first.state = stateSent
	n := 0
	for i, c := range b.queue {
		if len(batch) == b.maxBatch {
			n = i
			break
		}
		n = i + 1
		if c.state == stateAbandoned {
			continue
		}
		c.state = stateSent
		batch = append(batch, c)
	}
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	if gathered {
		b.gathering--
		b.handOffLocked()
	}
	b.mu.Unlock()

	defer func() {
		b.finish(batch)
		*bp = batch[:0]
		batches.Put(bp)
	}()
	for _, c := range batch {
		c.err = errBatchAborted // until exec says otherwise
	}
	bctx, cancel := b.context(ctx, batch)
	defer cancel()
	b.exec(bctx, batch)
}

// finish delivers the results of batch, whose first call belongs to the
// leader, and hands the lead on.
func (b *batcher) finish(batch []*call) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range batch[1:] {
		c.state = stateDone
		c.wake <- false
	}
	batch[0].state = stateDone
	b.leaders--
	b.handOffLocked()
	clear(batch)
}

// handOffLocked makes the oldest queued call the leader of a new batch when a
// slot is free.
func (b *batcher) handOffLocked() {
	for len(b.queue) > 0 && !b.busyLocked() {
		c := b.queue[0]
		rest := copy(b.queue, b.queue[1:])
		b.queue[rest] = nil
		b.queue = b.queue[:rest]
		if c.state == stateAbandoned {
			continue
		}
		c.state = stateLeading
		b.leaders++
		c.wake <- true
		return
	}
}

// context returns the batch's context: it keeps the values of ctx (the
// leader's) but not its cancellation, and its deadline is the earliest bound
// of the calls in the batch (the oldest call's: asked for + b.timeout) or,
// when every call in the batch has a deadline, the latest of them if that
// comes sooner. (One impatient caller does not cut the batch short for the
// others; the oldest call's bound does, which is at most b.timeout away.)
func (b *batcher) context(ctx context.Context, batch []*call) (context.Context, context.CancelFunc) {
	deadline := batch[0].bound
	var latest time.Time
	all := true
	for _, c := range batch {
		if c.bound.Before(deadline) {
			deadline = c.bound
		}
		if c.deadline.IsZero() {
			all = false
		} else if c.deadline.After(latest) {
			latest = c.deadline
		}
	}
	if all && latest.Before(deadline) {
		deadline = latest
	}
	return context.WithDeadline(context.WithoutCancel(ctx), deadline)
}
