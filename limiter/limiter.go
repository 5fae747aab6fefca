package limiter

import (
	"context"
	"errors"
	"fmt"
	"time"
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
}

// Validate reports whether r is a usable request (see ValidateCall). It does
// not check OnStoreFailure beyond it being a known policy.
func (r Request) Validate() error {
	if err := ValidateCall(r.Limit, r.Cost, r.MaxWait); err != nil {
		return err
	}
	if r.OnStoreFailure != AllowLocal && r.OnStoreFailure != Deny {
		return invalid("on_store_failure", "must be allow_local or deny, got %d", int(r.OnStoreFailure))
	}
	return nil
}

// Limiter decides calls against a shared [Store], with a local fallback when
// the store fails and a local cache of recent denials.
//
// It never sleeps: an allowed reservation comes back with Result.Wait and the
// caller holds the call for that long.
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
// Create one with [New]; the zero value is not usable. A Limiter is safe for
// concurrent use.
type Limiter struct {
	store    Store
	fallback Store
	now      func() time.Time
	denies   *denyCache // nil when disabled
}

// Option configures a Limiter.
type Option func(*options)

type options struct {
	fallback      Store
	now           func() time.Time
	denyCacheSize int
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

// New returns a Limiter deciding with store.
func New(store Store, opts ...Option) *Limiter {
	o := options{now: time.Now, denyCacheSize: DefaultDenyCacheSize}
	for _, opt := range opts {
		opt(&o)
	}
	if o.fallback == nil {
		o.fallback = NewMemoryStore(WithMemoryClock(o.now))
	}
	l := &Limiter{store: store, fallback: o.fallback, now: o.now}
	if o.denyCacheSize > 0 {
		l.denies = newDenyCache(o.denyCacheSize)
	}
	return l
}

// Acquire decides req. Errors:
//   - an *InvalidArgumentError (matches ErrInvalidArgument) for a bad request;
//   - the context's error when ctx is done before the store answered;
//   - under Deny, an error wrapping ErrStoreUnavailable and the store's error
//     when the store fails;
//   - under AllowLocal, an error only if the fallback store fails too.
//
// A store failure under AllowLocal gives a Result with Degraded set.
func (l *Limiter) Acquire(ctx context.Context, req Request) (Result, error) {
	if err := req.Validate(); err != nil {
		return Result{}, err
	}
	sent := l.now() // before the store decides: see the deny cache notes
	if l.denies != nil {
		if res, ok := l.denies.lookup(req, sent); ok {
			return res, nil
		}
	}
	res, err := l.store.Take(ctx, req.Key, req.Limit, req.Cost, req.MaxWait)
	if err == nil {
		if !res.Allowed && l.denies != nil {
			l.denies.remember(req, sent, res)
		}
		return res, nil
	}
	if err := l.classify(ctx, err, req.OnStoreFailure); err != nil {
		return Result{}, err
	}
	res, err = l.fallback.Take(ctx, req.Key, req.Limit, req.Cost, req.MaxWait)
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
	res, err := l.store.Peek(ctx, req.Key, req.Limit, req.Cost)
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
