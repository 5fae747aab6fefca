package limiter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/topdeck/resilience/internal/storehealth"
)

// FailurePolicy says what the Limiter does when its store cannot decide.
// The zero value is AllowLocal.
type FailurePolicy int

const (
	// AllowLocal decides with the Limiter's local fallback store (a bucket
	// of the same limit, kept by this process only) and marks the Result
	// Degraded. The fleet then admits up to one limit per replica.
	AllowLocal FailurePolicy = iota
	// Deny fails the call with an error wrapping ErrStoreUnavailable.
	Deny
)

// String returns "allow_local" or "deny".
func (p FailurePolicy) String() string {
	switch p {
	case AllowLocal:
		return "allow_local"
	case Deny:
		return "deny"
	default:
		return fmt.Sprintf("FailurePolicy(%d)", int(p))
	}
}

// Request is one call to [Limiter.Acquire].
type Request struct {
	Key            string        // bucket key; any string
	Limit          Limit         // the policy; must be valid
	Cost           int64         // tokens the call takes; 1 <= Cost <= burst
	MaxWait        time.Duration // longest the caller will wait for a reservation; 0 = answer now
	OnStoreFailure FailurePolicy // what to do when the store fails; zero value AllowLocal
	Lease          LeasePolicy   // lease mode for a hot key (see LeasePolicy); zero value off
	// Slots is a concurrency limit on Key (zero value: none), decided by
	// AcquireAll; with Slots, Limit may be the zero Limit (no rate limit).
	Slots Slots
	// Shadow decides the request without enforcing it (AcquireAll and
	// package admission): its refusal is reported, never acted on.
	Shadow bool
}

// Validate reports whether r is a usable request (see ValidateCall). It does
// not check OnStoreFailure beyond it being a known policy.
func (r Request) Validate() error {
	if r.Slots.Enabled() {
		if err := r.Slots.Validate(); err != nil {
			return err
		}
		if !r.Limit.hasRate() {
			if r.Cost < 1 {
				return invalid("cost", "must be at least 1, got %d", r.Cost)
			}
			if r.MaxWait < 0 {
				return invalid("max_wait", "must not be negative, got %v", r.MaxWait)
			}
			if r.Lease.Enabled() {
				return invalid("lease.max_tokens", "needs a rate limit (lease mode takes tokens), not a concurrency limit alone")
			}
			return r.validPolicy()
		}
	}
	if err := ValidateCall(r.Limit, r.Cost, r.MaxWait); err != nil {
		return err
	}
	if err := r.validPolicy(); err != nil {
		return err
	}
	if r.Lease.Enabled() {
		if err := r.Lease.Validate(r.Limit); err != nil {
			return err
		}
		if c := r.Lease.LeaseCapacity(r.Limit); r.Cost > c {
			return &InvalidArgumentError{Field: "cost", Reason: fmt.Sprintf("must be at most %d under this leased limit (its burst less rate x lease ttl), got %d", c, r.Cost), Err: ErrCostExceedsBurst}
		}
	}
	return nil
}

func (r Request) validPolicy() error {
	if r.OnStoreFailure != AllowLocal && r.OnStoreFailure != Deny {
		return invalid("on_store_failure", "must be allow_local or deny, got %d", int(r.OnStoreFailure))
	}
	return nil
}

// Limiter decides calls against a shared [Store], with a local fallback when
// the store fails and a local cache of recent denials.
//
// Deny cache: when the store denies a call of cost c on (key, limit) with
// "retry after d", the Limiter answers later calls on the same key and limit
// with cost >= c locally, as denied, until d has passed since it sent the
// request to the store, unless the caller would wait long enough. While the
// key is used under that one limit, this never denies a call the store would
// admit: such a bucket's TAT only moves forward through admissions, so "cost
// c is not there before T" stays true until T for any cost >= c; and d is
// counted from before the store decided. A key also used under another limit
// (whose state carries over as tokens used, which can leave fewer tokens used
// than before) or whose reservation was canceled by another replica may be
// refused by a cached denial it would no longer get from the store, for at
// most the d the store itself answered. Cached denials carry RetryAfter = T -
// now (exact for cost c, a lower bound for larger costs), ResetAfter counted
// the same way, and a Remaining computed from it (it may be one below the
// store's).
//
// Store health: the Limiter tracks its store's health with a
// [storehealth.Tracker]. After a store failure (an error other than the
// caller's own context ending), calls skip the store for a retry interval and
// are answered at once by their FailurePolicy: a Degraded answer from the
// local fallback, or an error wrapping ErrStoreUnavailable and
// storehealth.ErrDown. Then one call at a time goes to the store as a probe;
// the first that succeeds makes every call use the store again. So a dead or
// hung store costs the calls in flight when it failed one store timeout each,
// and one call per retry interval after that, not a timeout per call.
//
// Reservations: Acquire never sleeps. An allowed reservation comes back with
// Result.Wait and the caller holds the call for that long, with [Limiter.Wait]
// (or its own timer and [Limiter.Cancel]), so that a caller who gives up
// gives its tokens back when nothing was taken after them.
//
// Create one with [New]; the zero value is not usable. A Limiter is safe for
// concurrent use.
type Limiter struct {
	store    Store
	fallback Store
	now      func() time.Time
	denies   *denyCache           // nil when disabled
	health   *storehealth.Tracker // nil when not tracked
	leases   *leases              // this replica's leases (lease mode)
	// storeTimeout bounds each store call from the moment it is asked for,
	// waiting for a batch slot included (0: none).
	storeTimeout time.Duration
	// boundedDecisions is set when the store keeps storeTimeout on its own
	// decisions (SelfBounded): Take and Peek then run under the caller's
	// context.
	boundedDecisions bool
}

// Option configures a Limiter.
type Option func(*options)

type options struct {
	fallback      Store
	now           func() time.Time
	denyCacheSize int
	health        *storehealth.Tracker
	healthSet     bool
	storeTimeout  time.Duration
}

// DefaultDenyCacheSize is the default number of (key, limit) denials the
// Limiter remembers.
const DefaultDenyCacheSize = 10000

// WithFallback sets the store used under AllowLocal when the shared store
// fails (default: a new MemoryStore reading the Limiter's clock).
func WithFallback(s Store) Option {
	return func(o *options) { o.fallback = s }
}

// WithClock sets the clock the Limiter reads for its deny cache and its
// default fallback store (default time.Now), for tests.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithDenyCacheSize bounds the deny cache to n entries (default
// DefaultDenyCacheSize); n <= 0 disables it.
func WithDenyCacheSize(n int) Option {
	return func(o *options) { o.denyCacheSize = n }
}

// WithHealthTracker sets the tracker of the store's health (default: a new
// storehealth.Tracker with storehealth.DefaultRetryInterval, reading the
// Limiter's clock). A nil tracker turns tracking off: every call then waits
// on the store, however often it failed.
func WithHealthTracker(t *storehealth.Tracker) Option {
	return func(o *options) { o.health, o.healthSet = t, true }
}

// WithStoreTimeout bounds each store call, from the moment the Limiter asks
// for it, by d (default: none; the store's own timeouts apply): decisions
// and dry runs of one limit or several, leases, give-backs of reservations,
// slot releases and upstream pauses alike. A batching store can make a call
// wait for a free pipeline before its own round trip starts: with a hung
// Redis that is two timeouts in a row for the calls queued behind the hung
// pipelines; d bounds the whole. A call that runs out of d is a store
// failure (the failure policy answers), never the caller's deadline. A store
// that keeps d on its own decisions ([SelfBounded]) gets Take and Peek under
// the caller's context as it is.
func WithStoreTimeout(d time.Duration) Option {
	return func(o *options) { o.storeTimeout = d }
}

// storeCtx is ctx bounded by the store timeout, if any.
func (l *Limiter) storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if l.storeTimeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, l.storeTimeout)
}

// storeCall makes the call f to the shared store the one way every store
// call of the Limiter is made: under the health tracker (errSkipped, without
// calling, while the store is known to be down; the outcome recorded after)
// and bounded as a whole by the store timeout (see WithStoreTimeout).
func storeCall[T any](l *Limiter, ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	return boundedCall(l, ctx, false, f)
}

// decisionCall is storeCall for a decision (Take or Peek), which a
// SelfBounded store bounds on its own.
func decisionCall(l *Limiter, ctx context.Context, f func(context.Context) (Result, error)) (Result, error) {
	return boundedCall(l, ctx, l.boundedDecisions, f)
}

// boundedCall is storeCall; with selfBounded, f keeps the store timeout on
// its own and runs under ctx.
func boundedCall[T any](l *Limiter, ctx context.Context, selfBounded bool, f func(context.Context) (T, error)) (T, error) {
	call, ok := l.health.Begin()
	if !ok {
		var zero T
		return zero, errSkipped
	}
	var v T
	var err error
	if selfBounded {
		v, err = f(ctx)
	} else {
		sctx, cancel := l.storeCtx(ctx)
		v, err = f(sctx)
		cancel()
	}
	call.End(outcome(ctx, err))
	return v, err
}

// New returns a Limiter deciding with store. It starts no goroutine.
func New(store Store, opts ...Option) *Limiter {
	o := options{now: time.Now, denyCacheSize: DefaultDenyCacheSize}
	for _, opt := range opts {
		opt(&o)
	}
	if o.fallback == nil {
		o.fallback = NewMemoryStore(WithMemoryClock(o.now))
	}
	if !o.healthSet {
		o.health = storehealth.New(storehealth.WithClock(o.now))
	}
	l := &Limiter{store: store, fallback: o.fallback, now: o.now, health: o.health, leases: newLeases(o.denyCacheSize), storeTimeout: o.storeTimeout}
	if sb, ok := store.(SelfBounded); ok {
		d := sb.DecisionBound()
		l.boundedDecisions = d > 0 && (o.storeTimeout <= 0 || d <= o.storeTimeout)
	}
	if o.denyCacheSize > 0 {
		l.denies = newDenyCache(o.denyCacheSize)
	}
	return l
}

// Acquire decides req. Errors:
//   - an *InvalidArgumentError (matches ErrInvalidArgument) for a bad request;
//   - the context's error when ctx is done before the store answered;
//   - under Deny, an error wrapping ErrStoreUnavailable and the store's error
//     when the store fails, or storehealth.ErrDown when the store failed
//     recently and was not called (see Store health);
//   - under AllowLocal, an error only if the fallback store fails too.
//
// A store failure under AllowLocal gives a Result with Degraded set.
func (l *Limiter) Acquire(ctx context.Context, req Request) (Result, error) {
	if err := req.Validate(); err != nil {
		return Result{}, err
	}
	if req.Slots.Enabled() || !req.Limit.hasRate() {
		return Result{}, invalid("max_in_flight", "a concurrency limit is decided by AcquireAll, which returns its slot")
	}
	if s, ok := l.store.(Leaser); ok && req.Lease.Enabled() {
		return l.acquireLeased(ctx, req, s)
	}
	sent := l.now() // before the store decides: see the deny cache notes
	if l.denies != nil {
		if res, ok := l.denies.lookup(req, sent); ok {
			return res, nil
		}
	}
	res, err := decisionCall(l, ctx, func(ctx context.Context) (Result, error) {
		return l.store.Take(ctx, req.Key, req.Limit, req.Cost, req.MaxWait)
	})
	if err == nil {
		if !res.Allowed && l.denies != nil {
			l.denies.remember(req, sent, res)
		}
		return res, nil
	}
	return l.fallbackTake(ctx, req, err)
}

// errSkipped is the store error of a call that skipped a store known to be
// down.
var errSkipped = fmt.Errorf("%w: %w", ErrStoreUnavailable, storehealth.ErrDown)

// fallbackTake answers req after the store failed with err, by policy.
func (l *Limiter) fallbackTake(ctx context.Context, req Request, err error) (Result, error) {
	if err := l.classify(ctx, err, req.OnStoreFailure); err != nil {
		return Result{}, err
	}
	res, err := l.fallback.Take(ctx, req.Key, req.Limit, req.Cost, req.MaxWait)
	if err != nil {
		return Result{}, fmt.Errorf("limiter: local fallback failed: %w", err)
	}
	res.Degraded = true
	return res, nil
}

// Peek answers as Acquire with MaxWait 0 would without changing anything (and
// without consulting the deny cache). Store failures follow
// req.OnStoreFailure, the fallback being peeked under AllowLocal.
func (l *Limiter) Peek(ctx context.Context, req Request) (Result, error) {
	req.MaxWait = 0
	if err := req.Validate(); err != nil {
		return Result{}, err
	}
	res, err := decisionCall(l, ctx, func(ctx context.Context) (Result, error) {
		return l.store.Peek(ctx, req.Key, req.Limit, req.Cost)
	})
	if err == nil {
		return res, nil
	}
	if err := l.classify(ctx, err, req.OnStoreFailure); err != nil {
		return Result{}, err
	}
	res, err = l.fallback.Peek(ctx, req.Key, req.Limit, req.Cost)
	if err != nil {
		return Result{}, fmt.Errorf("limiter: local fallback failed: %w", err)
	}
	res.Degraded = true
	return res, nil
}

// CancelTimeout bounds the store call of a Cancel that Wait makes after its
// caller's context ended.
const CancelTimeout = 100 * time.Millisecond

// Wait holds the caller of res, an allowed reservation that Acquire answered
// for req, until res.Wait has passed, and returns nil. If ctx ends first, it
// gives the reserved tokens back (Cancel, under a context that keeps ctx's
// values but not its end, bounded by CancelTimeout) and returns ctx.Err(). A
// res with Wait 0 returns at once.
//
// This is the whole of holding a call: a server handler that calls Acquire
// and then Wait never leaves the tokens of a caller who gave up taken.
func (l *Limiter) Wait(ctx context.Context, req Request, res Result) error {
	return hold(ctx, res.Wait, func(cctx context.Context) {
		_, _ = l.Cancel(cctx, req, res) // best effort: the caller has gone
	})
}

// hold waits d and returns nil; a d <= 0 returns at once. If ctx ends
// first, it calls giveBack under a context that keeps ctx's values but not
// its end, bounded by CancelTimeout, and returns ctx.Err(). It is Wait and
// WaitAll but for what they give back.
func hold(ctx context.Context, d time.Duration, giveBack func(ctx context.Context)) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), CancelTimeout)
	defer cancel()
	giveBack(cctx)
	return ctx.Err()
}

// Cancel gives back the tokens of res, an allowed reservation (Wait > 0) that
// Acquire answered for req, whose caller will not proceed, if nothing was
// taken on the bucket after it (see Canceler). It reports whether they were
// given back. A Degraded res is given back to the local fallback. It gives
// nothing back, with a nil error, for a res that is no reservation, when the
// store does not implement Canceler, or when the store is known to be down;
// an error means the store failed (it wraps ErrStoreUnavailable) or ctx
// ended.
func (l *Limiter) Cancel(ctx context.Context, req Request, res Result) (bool, error) {
	if err := req.Limit.Validate(); err != nil {
		return false, err
	}
	if !res.Allowed || res.Wait <= 0 || res.Reservation.IsZero() {
		return false, nil
	}
	store := l.store
	if res.Degraded {
		store = l.fallback
	}
	c, ok := store.(Canceler)
	if !ok {
		return false, nil
	}
	cancel := func(ctx context.Context) (bool, error) { return c.Cancel(ctx, req.Key, req.Limit, res.Reservation) }
	var given bool
	var err error
	if res.Degraded {
		given, err = cancel(ctx)
	} else if given, err = storeCall(l, ctx, cancel); errors.Is(err, errSkipped) {
		return false, nil // the store is down: the tokens refill by themselves
	}
	if err != nil {
		return false, l.classify(ctx, err, Deny)
	}
	if given && l.denies != nil {
		l.denies.forget(req)
	}
	return given, nil
}

// Health returns the tracker of the store's health (nil when tracking is
// off), for health checks and metrics.
func (l *Limiter) Health() *storehealth.Tracker { return l.health }

// outcome classifies a store call's error for the health tracker: a bad
// argument says nothing about the store's health.
func outcome(ctx context.Context, err error) storehealth.Outcome {
	if errors.Is(err, ErrInvalidArgument) {
		return storehealth.Unknown
	}
	return storehealth.OutcomeOf(ctx, err)
}

// classify maps a store error to the error Acquire returns, or nil when the
// request should fall back to the local store.
func (l *Limiter) classify(ctx context.Context, err error, policy FailurePolicy) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if errors.Is(err, ErrInvalidArgument) {
		return err
	}
	if policy == Deny {
		if errors.Is(err, ErrStoreUnavailable) {
			return err
		}
		return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	return nil
}
