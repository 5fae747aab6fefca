package admission

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/internal/enum"
	"github.com/topdeck/resilience/limiter"
)

// ErrUnsupported is returned for a Request that asks for what the
// Admitter's Limits cannot do: several limits in one call, or a concurrency
// limit, with Limits that do not implement MultiLimits.
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

// MultiLimits is what an Admitter needs of the rate limiter for several
// limits in one call and for concurrency limits (all or nothing, see
// limiter.MultiStore). *limiter.Limiter implements it.
type MultiLimits interface {
	AcquireAll(ctx context.Context, reqs []limiter.Request, maxWait time.Duration) (limiter.MultiResult, error)
	PeekAll(ctx context.Context, reqs []limiter.Request) (limiter.MultiResult, error)
	WaitAll(ctx context.Context, reqs []limiter.Request, res limiter.MultiResult) error
}

var (
	_ Breakers    = (*breaker.Breaker)(nil)
	_ Breakers    = (*breaker.MemoryStore)(nil)
	_ Limits      = (*limiter.Limiter)(nil)
	_ MultiLimits = (*limiter.Limiter)(nil)
)

// Circuit names the circuit breaker a call goes through, with its
// settings.
type Circuit struct {
	Name     string
	Settings breaker.Settings
	// Shadow puts the breaker in shadow mode: a refusal by it is reported
	// in Decision.ShadowReason and the call goes on (without a probe
	// permit).
	Shadow bool
}

// Request is one call to decide. The zero value asks for nothing and is
// admitted. The Admitter keeps no reference to it: a caller may build it
// on its stack (Circuit and Limits included) for every call.
type Request struct {
	// Circuit is the circuit breaker the call goes through; nil for none.
	Circuit *Circuit
	// Limits are the limits the call takes, all or nothing, at most
	// limiter.MaxLimitsPerCall with distinct keys: rate limits, and
	// concurrency limits (limiter.Request.Slots). One rate limit alone is
	// decided by Limits.Acquire (one gcra.lua round trip, as fast as ever);
	// several, or any concurrency limit, by MultiLimits.AcquireAll. A limit
	// with Shadow set is decided and reported but never refuses the call.
	// Their MaxWait is ignored: the call's MaxWait below bounds the whole
	// call.
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
	// ReasonUpstreamThrottled: a limit's key is paused for its upstream
	// (limiter.Pauser).
	ReasonUpstreamThrottled
	// ReasonConcurrencyLimited: a concurrency limit has all its slots held.
	ReasonConcurrencyLimited
)

// String returns "allowed", "rate_limited", "circuit_open",
// "upstream_throttled" or "concurrency_limited".
func (r Reason) String() string { return enum.Name("Reason", r, reasonNames) }

var reasonNames = []string{
	ReasonAllowed:            "allowed",
	ReasonRateLimited:        "rate_limited",
	ReasonCircuitOpen:        "circuit_open",
	ReasonUpstreamThrottled:  "upstream_throttled",
	ReasonConcurrencyLimited: "concurrency_limited",
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

	// Limit is the limiter's answer for the first limit when the Request
	// had one and the breaker admitted (or, in shadow mode, let through)
	// the call (Remaining, ResetAfter, Degraded).
	Limit limiter.Result
	// Limits are every limit's own answer, in the Request's order, when the
	// call was decided by MultiLimits (several limits, or a concurrency
	// limit); nil for one rate limit alone, whose answer is Limit.
	Limits []limiter.Result
	// LimitedBy is, when a limit refused the call, the index of the one
	// whose refusal has the longest RetryAfter; -1 otherwise.
	LimitedBy int
	// SlotID identifies the concurrency slots the admitted call holds, to
	// release with limiter.Limiter.ReleaseSlots when it ends; "" for none.
	SlotID string
	// ShadowReason is why a policy in shadow mode (the breaker, or a limit
	// with Shadow) would have refused the call, which went on anyway;
	// ReasonAllowed when none would have.
	ShadowReason Reason
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

// multi returns the MultiLimits that decides req, nil when req has no
// limit or a single rate limit, which goes through Limits.Acquire.
func (a *Admitter) multi(req Request) (MultiLimits, error) {
	if len(req.Limits) == 0 || (len(req.Limits) == 1 && !req.Limits[0].Slots.Enabled()) {
		return nil, nil
	}
	ml, ok := a.limits.(MultiLimits)
	if !ok {
		return nil, fmt.Errorf("%w: %d limits or a concurrency limit in one call", ErrUnsupported, len(req.Limits))
	}
	return ml, nil
}

// LimitReason is the reason of a limit's refusal r: ReasonUpstreamThrottled
// for a paused key, ReasonConcurrencyLimited for full slots,
// ReasonRateLimited otherwise. It is the Decision's Reason (or
// ShadowReason) when r refuses the call, and the reason to report of each
// of Decision.Limits that refused.
func LimitReason(r limiter.Result) Reason {
	switch {
	case r.Paused:
		return ReasonUpstreamThrottled
	case r.SlotsFull:
		return ReasonConcurrencyLimited
	}
	return ReasonRateLimited
}

// Decide decides req: the breaker first, then the limits, holding the call
// for a reservation (and, with a concurrency limit and MaxWait, for a slot,
// first come first served). A refusal is a Decision, not an error. A policy
// in shadow mode is decided but never refuses: its refusal is in
// ShadowReason. Errors: the breaker's or the limiter's (invalid arguments, a
// store failure under a deny policy), the context's when the caller left
// while held (its tokens, slots and probe lease are given back), or
// ErrUnsupported. With an error after the breaker admitted the call, the
// Decision carries the breaker's answer (Breaker, without its permit,
// given back) and nothing else.
func (a *Admitter) Decide(ctx context.Context, req Request) (Decision, error) {
	ml, d, done, err := a.start(ctx, req, false)
	if err != nil || done {
		return d, err
	}
	if ml != nil {
		return a.decideAll(ctx, ml, req, d)
	}
	lreq := req.Limits[0]
	lreq.MaxWait = a.maxWait(ctx, req.MaxWait)
	if lreq.Shadow {
		lreq.MaxWait = 0 // a shadow limit never holds the call either
	}
	res, err := a.limits.Acquire(ctx, lreq)
	if err != nil {
		return a.abandon(ctx, req, d), err
	}
	d.Limit = res
	if !res.Allowed {
		if d.limitRefused(res, lreq.Shadow) {
			// Refused by the limiter: not an upstream failure, and a
			// probe lease the call will not use goes back at once.
			a.release(ctx, req.Circuit, d.Breaker.PermitID)
			d.Breaker.PermitID = ""
		}
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

// start begins a decision on req (a dry run when peek): the MultiLimits
// that decides its limits (see multi) and the Decision after its breaker,
// if any, which is the answer (done) when the breaker refused the call or
// req has no limit.
func (a *Admitter) start(ctx context.Context, req Request, peek bool) (ml MultiLimits, d Decision, done bool, err error) {
	if ml, err = a.multi(req); err != nil {
		return nil, Decision{}, false, err
	}
	d = Decision{Allowed: true, LimitedBy: -1}
	if req.Circuit != nil {
		adm, err := a.circuitAnswer(ctx, req.Circuit, peek)
		if err != nil {
			return nil, Decision{}, false, err
		}
		d.Breaker = adm
		if !adm.Allowed && d.circuitRefused(req.Circuit, max(adm.RetryAfter, 0)) {
			return nil, d, true, nil
		}
	}
	return ml, d, len(req.Limits) == 0, nil
}

// circuitAnswer is the breaker c's answer: Allow's, or for a dry run
// (peek) the one its Status implies, taking no probe lease: State,
// Generation, and Allowed or, when it would refuse, how long (WouldWait).
func (a *Admitter) circuitAnswer(ctx context.Context, c *Circuit, peek bool) (breaker.Admission, error) {
	if !peek {
		return a.breakers.Allow(ctx, c.Name, c.Settings)
	}
	st, err := a.breakers.Status(ctx, c.Name, c.Settings)
	if err != nil {
		return breaker.Admission{}, err
	}
	adm := breaker.Admission{State: st.State, Generation: st.Generation, Degraded: st.Degraded}
	if wait := WouldWait(st, a.now()); wait > 0 {
		adm.RetryAfter = wait
	} else {
		adm.Allowed = true
	}
	return adm, nil
}

// decideAll decides req's limits all or nothing with ml, d holding the
// breaker's answer.
func (a *Admitter) decideAll(ctx context.Context, ml MultiLimits, req Request, d Decision) (Decision, error) {
	res, err := ml.AcquireAll(ctx, req.Limits, a.maxWait(ctx, req.MaxWait))
	if err != nil {
		return a.abandon(ctx, req, d), err
	}
	fill(&d, req, res)
	if !res.Allowed {
		a.release(ctx, req.Circuit, d.Breaker.PermitID)
		d.Breaker.PermitID = ""
		return d, nil
	}
	if res.Wait > 0 {
		if err := ml.WaitAll(ctx, req.Limits, res); err != nil {
			return a.abandon(ctx, req, d), err
		}
		d.Waited = res.Wait
	}
	return d, nil
}

// fill sets d's limit fields from res, the answer on req's limits.
func fill(d *Decision, req Request, res limiter.MultiResult) {
	d.Limits = res.Results
	for i := range d.Limits {
		d.Limits[i].Degraded = res.Degraded
	}
	if len(d.Limits) > 0 {
		d.Limit = d.Limits[0]
	}
	d.Limit.Degraded = res.Degraded
	d.SlotID = res.SlotID
	for i, r := range res.Results {
		if i < len(req.Limits) && req.Limits[i].Shadow && !r.Allowed {
			d.shadowRefused(r)
		}
	}
	if !res.Allowed && res.Refused >= 0 && res.Refused < len(res.Results) {
		d.Allowed, d.RetryAfter, d.LimitedBy = false, res.RetryAfter, res.Refused
		d.Reason = LimitReason(res.Results[res.Refused])
	}
}

// abandon gives back the probe lease of d, a call that will not go, and
// returns what an error carries: the breaker's answer alone.
func (a *Admitter) abandon(ctx context.Context, req Request, d Decision) Decision {
	a.release(ctx, req.Circuit, d.Breaker.PermitID)
	d.Breaker.PermitID = ""
	return Decision{Breaker: d.Breaker, LimitedBy: -1}
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
// taken, no token, no slot, no reservation (MaxWait is ignored). The
// breaker's answer carries its State and Generation; a refusal by it says
// how long until it would admit (see WouldWait). Errors: as Decide's.
func (a *Admitter) Peek(ctx context.Context, req Request) (Decision, error) {
	ml, d, done, err := a.start(ctx, req, true)
	if err != nil || done {
		return d, err
	}
	if ml != nil {
		res, err := ml.PeekAll(ctx, req.Limits)
		if err != nil {
			return Decision{}, err
		}
		fill(&d, req, res)
		return d, nil
	}
	res, err := a.limits.Peek(ctx, req.Limits[0])
	if err != nil {
		return Decision{}, err
	}
	d.Limit = res
	if !res.Allowed {
		d.limitRefused(res, req.Limits[0].Shadow)
	}
	return d, nil
}

// circuitRefused records in d that the breaker c refused the call, for
// retryAfter: as the Decision, and then it returns true (d is the answer),
// or, for a breaker in shadow mode, as the ShadowReason only.
func (d *Decision) circuitRefused(c *Circuit, retryAfter time.Duration) bool {
	if c.Shadow {
		d.ShadowReason = ReasonCircuitOpen
		return false
	}
	d.Allowed, d.Reason, d.RetryAfter = false, ReasonCircuitOpen, retryAfter
	return true
}

// limitRefused records in d the refusal res of a request's single limit:
// as the Decision, and then it returns true, or, for a limit in shadow mode,
// as the ShadowReason only (see shadowRefused).
func (d *Decision) limitRefused(res limiter.Result, shadow bool) bool {
	if shadow {
		d.shadowRefused(res)
		return false
	}
	d.Allowed, d.Reason, d.RetryAfter, d.LimitedBy = false, LimitReason(res), res.RetryAfter, 0
	return true
}

// shadowRefused records the refusal r of a limit in shadow mode as d's
// ShadowReason, unless a shadow refusal came first.
func (d *Decision) shadowRefused(r limiter.Result) {
	if d.ShadowReason == ReasonAllowed {
		d.ShadowReason = LimitReason(r)
	}
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
