package admission

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/limiter"
)

// ErrUnsupported is returned for a Request that asks for what the Admitter
// does not do yet (several limits in one call).
var ErrUnsupported = errors.New("admission: not supported")

// Breakers is what an Admitter needs of the circuit breakers.
// *breaker.Breaker and the breaker stores implement it.
type Breakers interface {
	Allow(ctx context.Context, name string, s breaker.Settings) (breaker.Admission, error)
	Status(ctx context.Context, name string, s breaker.Settings) (breaker.Status, error)
	Release(ctx context.Context, name string, permitID string) error
}

// Limits is what an Admitter needs of the rate limiter. *limiter.Limiter
// implements it.
type Limits interface {
	Acquire(ctx context.Context, req limiter.Request) (limiter.Result, error)
	Peek(ctx context.Context, req limiter.Request) (limiter.Result, error)
	Wait(ctx context.Context, req limiter.Request, res limiter.Result) error
}

var (
	_ Breakers = (*breaker.Breaker)(nil)
	_ Breakers = (*breaker.MemoryStore)(nil)
	_ Limits   = (*limiter.Limiter)(nil)
)

// Circuit names the circuit breaker a call goes through, with its
// settings.
type Circuit struct {
	Name     string
	Settings breaker.Settings
}

// Request is one call to decide. The zero value asks for nothing and is
// admitted. The Admitter keeps no reference to it: a caller may build it
// on its stack (Circuit and Limits included) for every call.
type Request struct {
	// Circuit is the circuit breaker the call goes through; nil for none.
	Circuit *Circuit
	// Limits are the rate limits the call takes tokens of, at most one
	// today (more is ErrUnsupported). Their MaxWait is ignored: the call's
	// MaxWait below bounds the whole call.
	Limits []limiter.Request
	// MaxWait is the longest the call may be held for a reservation; 0
	// answers at once. It is cut to the context's deadline less the
	// Admitter's deadline margin (WithDeadlineMargin): tokens are never
	// reserved for a wait the caller cannot sit out.
	MaxWait time.Duration
}

// Reason says why a Decision admits or refuses.
type Reason int

const (
	// ReasonAllowed: the call may go.
	ReasonAllowed Reason = iota
	// ReasonRateLimited: a rate limit refused the call.
	ReasonRateLimited
	// ReasonCircuitOpen: the breaker refused the call (OPEN, or HALF_OPEN
	// with its probe slots taken).
	ReasonCircuitOpen
)

// String returns "allowed", "rate_limited" or "circuit_open".
func (r Reason) String() string {
	switch r {
	case ReasonAllowed:
		return "allowed"
	case ReasonRateLimited:
		return "rate_limited"
	case ReasonCircuitOpen:
		return "circuit_open"
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// Decision is the answer to a Request. The zero value refuses nothing
// known: it is not Allowed, for ReasonAllowed.
type Decision struct {
	// Allowed says whether the call may go (it has been held for its
	// reservation already when Waited > 0).
	Allowed bool
	// Reason says why.
	Reason Reason
	// RetryAfter is, when refused, how long until the call could be
	// admitted.
	RetryAfter time.Duration

	// Breaker is the breaker's answer when the Request named one: its
	// State, Generation and, for an admitted HALF_OPEN probe, PermitID (to
	// pass to Report). An Admission of a refused call carries no PermitID:
	// its lease was given back.
	Breaker breaker.Admission

	// Limit is the limiter's answer when the Request had a limit and the
	// breaker admitted the call (Remaining, ResetAfter, Degraded).
	Limit limiter.Result
	// Waited is how long the call was held for its reservation.
	Waited time.Duration
}

// Degraded reports whether the decision holds for this replica or process
// only: the breaker or the limiter decided without its shared store.
func (d Decision) Degraded() bool { return d.Breaker.Degraded || d.Limit.Degraded }

// Admitter decides calls (Decide) and answers dry runs (Peek) on one set of
// breakers and one limiter. Create it with New; the zero value is not
// usable. It is safe for concurrent use and starts no goroutine.
type Admitter struct {
	breakers  Breakers
	limits    Limits
	now       func() time.Time
	margin    time.Duration
	onRelease func(ctx context.Context, breaker string, err error)
}

// Option configures New.
type Option func(*options)

type options struct {
	now       func() time.Time
	margin    time.Duration
	onRelease func(ctx context.Context, breaker string, err error)
}

// WithClock sets the clock Peek reads to say how long an OPEN breaker still
// refuses (default time.Now). Contexts' deadlines are of the real clock
// whatever it is.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithDeadlineMargin keeps d between the end of a reservation's wait and
// the caller's deadline, for the answer to travel back (default 0).
func WithDeadlineMargin(d time.Duration) Option {
	return func(o *options) { o.margin = max(d, 0) }
}

// WithReleaseErrorHandler is told when an unused probe lease cannot be
// given back (it expires by itself after the breaker's probe timeout); the
// call's answer is unchanged. Default: nothing is told.
func WithReleaseErrorHandler(f func(ctx context.Context, breaker string, err error)) Option {
	return func(o *options) { o.onRelease = f }
}

// New returns an Admitter deciding with breakers and limits.
func New(breakers Breakers, limits Limits, opts ...Option) *Admitter {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	return &Admitter{breakers: breakers, limits: limits, now: o.now, margin: o.margin, onRelease: o.onRelease}
}

// check refuses what the Admitter does not do yet.
func check(req Request) error {
	if len(req.Limits) > 1 {
		return fmt.Errorf("%w: %d limits in one call (at most 1)", ErrUnsupported, len(req.Limits))
	}
	return nil
}

// Decide decides req: the breaker first, then the limit, holding the call
// for a reservation. A refusal is a Decision, not an error. Errors: the
// breaker's or the limiter's (invalid arguments, a store failure under a
// deny policy), the context's when the caller left while held (its tokens
// and probe lease are given back), or ErrUnsupported. With an error after
// the breaker admitted the call, the Decision carries the breaker's answer
// (Breaker, without its permit, given back) and nothing else.
func (a *Admitter) Decide(ctx context.Context, req Request) (Decision, error) {
	if err := check(req); err != nil {
		return Decision{}, err
	}
	d := Decision{Allowed: true}
	if req.Circuit != nil {
		adm, err := a.breakers.Allow(ctx, req.Circuit.Name, req.Circuit.Settings)
		if err != nil {
			return Decision{}, err
		}
		d.Breaker = adm
		if !adm.Allowed {
			d.Allowed, d.Reason, d.RetryAfter = false, ReasonCircuitOpen, max(adm.RetryAfter, 0)
			return d, nil
		}
	}
	if len(req.Limits) == 0 {
		return d, nil
	}
	lreq := req.Limits[0]
	lreq.MaxWait = a.maxWait(ctx, req.MaxWait)
	res, err := a.limits.Acquire(ctx, lreq)
	if err != nil {
		return a.abandon(ctx, req, d), err
	}
	d.Limit = res
	if !res.Allowed {
		// Refused by the limiter: not an upstream failure, and a probe
		// lease the call will not use goes back at once.
		a.release(ctx, req.Circuit, d.Breaker.PermitID)
		d.Breaker.PermitID = ""
		d.Allowed, d.Reason, d.RetryAfter = false, ReasonRateLimited, res.RetryAfter
		return d, nil
	}
	if res.Wait > 0 {
		// The tokens are reserved for now+Wait: hold the call until then.
		// A caller who gives up first gets them back, when nothing was
		// taken after them.
		if err := a.limits.Wait(ctx, lreq, res); err != nil {
			return a.abandon(ctx, req, d), err
		}
		d.Waited = res.Wait
	}
	return d, nil
}

// abandon gives back the probe lease of d, a call that will not go, and
// returns what an error carries: the breaker's answer alone.
func (a *Admitter) abandon(ctx context.Context, req Request, d Decision) Decision {
	a.release(ctx, req.Circuit, d.Breaker.PermitID)
	d.Breaker.PermitID = ""
	return Decision{Breaker: d.Breaker}
}

// maxWait is maxWait cut to ctx's deadline less the margin.
func (a *Admitter) maxWait(ctx context.Context, maxWait time.Duration) time.Duration {
	if dl, ok := ctx.Deadline(); ok && maxWait > 0 {
		maxWait = max(min(maxWait, time.Until(dl)-a.margin), 0)
	}
	return maxWait
}

// release gives back a probe lease the call will not use. It never fails
// the call: an unreleased lease expires after the probe timeout by itself.
func (a *Admitter) release(ctx context.Context, c *Circuit, permit string) {
	if permit == "" {
		return
	}
	if err := a.breakers.Release(context.WithoutCancel(ctx), c.Name, permit); err != nil && a.onRelease != nil {
		a.onRelease(ctx, c.Name, err)
	}
}

// Peek answers as Decide would now, changing nothing: no probe lease is
// taken, no token, no reservation (MaxWait is ignored). The breaker's
// answer carries its State and Generation; a refusal by it says how long
// until it would admit (see WouldWait). Errors: as Decide's.
func (a *Admitter) Peek(ctx context.Context, req Request) (Decision, error) {
	if err := check(req); err != nil {
		return Decision{}, err
	}
	d := Decision{Allowed: true}
	if req.Circuit != nil {
		st, err := a.breakers.Status(ctx, req.Circuit.Name, req.Circuit.Settings)
		if err != nil {
			return Decision{}, err
		}
		d.Breaker = breaker.Admission{State: st.State, Generation: st.Generation, Degraded: st.Degraded}
		if wait := WouldWait(st, a.now()); wait > 0 {
			d.Breaker.RetryAfter = wait
			d.Allowed, d.Reason, d.RetryAfter = false, ReasonCircuitOpen, wait
			return d, nil
		}
		d.Breaker.Allowed = true
	}
	if len(req.Limits) == 0 {
		return d, nil
	}
	res, err := a.limits.Peek(ctx, req.Limits[0])
	if err != nil {
		return Decision{}, err
	}
	d.Limit = res
	if !res.Allowed {
		d.Allowed, d.Reason, d.RetryAfter = false, ReasonRateLimited, res.RetryAfter
	}
	return d, nil
}

// WouldWait is how long a breaker in status st would refuse a call at now:
// 0 when it would admit one (CLOSED, an OPEN one whose next probe time has
// come, or a HALF_OPEN one with a free probe slot); for a full HALF_OPEN
// breaker, at least a millisecond.
func WouldWait(st breaker.Status, now time.Time) time.Duration {
	switch st.State {
	case breaker.StateOpen:
		return max(st.NextProbeAt.Sub(now), 0)
	case breaker.StateHalfOpen:
		if st.ProbesInFlight < int64(st.Settings.HalfOpenMaxCalls) {
			return 0
		}
		return max(st.NextProbeAt.Sub(now), time.Millisecond)
	}
	return 0
}
