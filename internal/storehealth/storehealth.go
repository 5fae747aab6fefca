package storehealth

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// ErrDown reports that a call skipped the store because the Tracker knows it
// to be down. Callers wrap it in their own "store unavailable" error.
var ErrDown = errors.New("storehealth: store failed recently; not called until a probe succeeds")

// DefaultRetryInterval is how long a Tracker that saw a failure waits before
// it lets a probe through, by default.
const DefaultRetryInterval = 500 * time.Millisecond

// Outcome is what one store call says about the store's health.
type Outcome int

const (
	// Unknown says nothing about the store: the caller's context ended
	// first, or the call failed for a reason of its own (bad input).
	Unknown Outcome = iota
	// Succeeded: the store answered.
	Succeeded
	// Failed: the store could not answer (unreachable, timed out, a
	// malformed reply, an error reply such as OOM).
	Failed
)

// String returns "unknown", "succeeded" or "failed".
func (o Outcome) String() string {
	switch o {
	case Succeeded:
		return "succeeded"
	case Failed:
		return "failed"
	default:
		return "unknown"
	}
}

// OutcomeOf classifies the error of a store call made under ctx: nil is
// Succeeded; an error while ctx is done is Unknown (the caller gave up or ran
// out of time, which says nothing about the store); any other error is
// Failed.
func OutcomeOf(ctx context.Context, err error) Outcome {
	switch {
	case err == nil:
		return Succeeded
	case ctx.Err() != nil:
		return Unknown
	default:
		return Failed
	}
}

// State is a snapshot of a Tracker, for health reports and metrics.
type State struct {
	// Healthy is true when calls go to the store.
	Healthy bool
	// Since is when the tracker last went down or healthy again (zero if
	// it never changed).
	Since time.Time
	// Failures counts the transitions from healthy to down.
	Failures uint64
	// Skipped counts the calls Begin turned away while down.
	Skipped uint64
}

// Tracker tracks one store's health (see the package documentation).
//
// The zero value is a healthy Tracker with DefaultRetryInterval reading
// time.Now. A nil *Tracker tracks nothing: Begin always answers ok. A Tracker
// is safe for concurrent use; it must not be copied after first use.
type Tracker struct {
	now      func() time.Time // nil means time.Now
	interval time.Duration    // 0 means DefaultRetryInterval

	// epoch changes (under mu) on every transition: even while healthy,
	// odd while down. Read without mu on the healthy path.
	epoch atomic.Uint64

	mu        sync.Mutex // protects the fields below
	since     time.Time  // of the last transition
	nextProbe time.Time  // while down: when the next probe may start
	probe     uint64     // while down: the sequence number of the probe in flight, 0 if none
	probeSeq  uint64     // the last probe's sequence number
	probeEnd  time.Time  // while a probe is in flight: when it is presumed lost
	failures  uint64
	skipped   uint64
}

// Option configures a Tracker.
type Option func(*Tracker)

// WithRetryInterval sets how long the Tracker waits after a failure before
// it lets a probe through (default DefaultRetryInterval); d <= 0 means the
// default.
func WithRetryInterval(d time.Duration) Option {
	return func(t *Tracker) { t.interval = d }
}

// WithClock sets the clock the Tracker reads (default time.Now), for tests.
func WithClock(now func() time.Time) Option {
	return func(t *Tracker) { t.now = now }
}

// New returns a healthy Tracker.
func New(opts ...Option) *Tracker {
	t := &Tracker{}
	for _, opt := range opts {
		opt(t)
	}
	return t
}

// Call is one store call let through by Begin. End it exactly once. The zero
// Call (from a nil Tracker) ends as a no-op. A Call is a small value; copy
// it freely, but end only one copy.
type Call struct {
	t     *Tracker
	epoch uint64
	probe uint64 // the probe's sequence number; 0 for an ordinary call
}

// Probe reports whether the call is a probe of a store known to be down:
// the caller may want to log it.
func (c Call) Probe() bool { return c.probe != 0 }

// Begin reports whether a call may go to the store now. When ok, the caller
// makes the call and reports its outcome with Call.End. When not ok, the
// store is known to be down and the caller must not call it: it answers at
// once (wrapping ErrDown, or from a local fallback).
func (t *Tracker) Begin() (c Call, ok bool) {
	if t == nil {
		return Call{}, true
	}
	if e := t.epoch.Load(); e%2 == 0 {
		return Call{t: t, epoch: e}, true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.epoch.Load()
	if e%2 == 0 {
		return Call{t: t, epoch: e}, true
	}
	now := t.clock()
	if (t.probe != 0 && now.Before(t.probeEnd)) || now.Before(t.nextProbe) {
		t.skipped++
		return Call{}, false
	}
	t.probeSeq++
	t.probe = t.probeSeq
	t.probeEnd = now.Add(t.retryInterval())
	return Call{t: t, epoch: e, probe: t.probe}, true
}

// End reports the call's outcome. Only an ordinary call's failure while
// healthy marks the tracker down, and only a probe's success marks it
// healthy again; outcomes of calls begun before the latest transition are
// ignored.
func (c Call) End(o Outcome) {
	t := c.t
	if t == nil || (c.probe == 0 && o != Failed) {
		return // the healthy path: nothing to record
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.epoch.Load()
	if c.epoch != e {
		return // begun before the latest transition
	}
	switch {
	case e%2 == 0: // healthy, and o is Failed
		now := t.clock()
		t.epoch.Store(e + 1)
		t.since = now
		t.nextProbe = now.Add(t.retryInterval())
		t.probe = 0
		t.failures++
	case o == Succeeded:
		t.epoch.Store(e + 1)
		t.since = t.clock()
		t.probe = 0
	case c.probe != t.probe:
		// A probe presumed lost, superseded by a newer one: only its
		// success counts.
	case o == Failed:
		t.nextProbe = t.clock().Add(t.retryInterval())
		t.probe = 0
	default: // Unknown: let the next caller probe at once
		t.probe = 0
	}
}

// Healthy reports whether calls go to the store (no failure seen since the
// last successful probe). A nil Tracker is always healthy.
func (t *Tracker) Healthy() bool {
	return t == nil || t.epoch.Load()%2 == 0
}

// State returns a snapshot of the tracker.
func (t *Tracker) State() State {
	if t == nil {
		return State{Healthy: true}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return State{Healthy: t.epoch.Load()%2 == 0, Since: t.since, Failures: t.failures, Skipped: t.skipped}
}

func (t *Tracker) clock() time.Time {
	if t.now == nil {
		return time.Now()
	}
	return t.now()
}

func (t *Tracker) retryInterval() time.Duration {
	if t.interval <= 0 {
		return DefaultRetryInterval
	}
	return t.interval
}
