package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/topdeck/resilience/admission"
	"github.com/topdeck/resilience/breaker"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/limiter"
)

// Limit is the limit of a key: a RateLimit given inline or a Policy named in
// the server's configuration. The interface is closed: those two types are
// the only implementations.
type Limit interface {
	// proto is the limit as the API carries it: inline, or a policy name.
	proto() (*resiliencev1.RateLimit, string)
	// local is the limit of local decisions; false when unknown.
	local(c *Client) (limiter.Limit, limiter.Slots, bool)
	// hasRate reports whether the limit may have a token bucket (always
	// true for a Policy: only the server knows).
	hasRate() bool
}

// RateLimit is an inline limit: a token bucket that holds at most Burst
// tokens (0 means MaxCalls) and refills at MaxCalls per Window, and/or a
// concurrency limit, fleet-wide: at most MaxInFlight calls admitted on the
// key and not yet released, each slot held for InFlightLease at most (a
// distributed bulkhead). MaxCalls 0 with MaxInFlight set is a concurrency
// limit alone. It is a plain value.
//
// The SDK releases the slot of a call it runs (Do, Call, Allow's done, the
// middleware) when the call ends; after Check or Wait the caller releases
// it with Client.Release. A slot never released is reclaimed when its lease
// ends: choose InFlightLease longer than the slowest call.
type RateLimit struct {
	MaxCalls int64
	Window   time.Duration
	Burst    int64
	// MaxInFlight bounds the calls in flight on the key (0: no concurrency
	// limit); InFlightLease is required with it (a whole number of
	// milliseconds, at most an hour).
	MaxInFlight   int64
	InFlightLease time.Duration
}

func (r RateLimit) proto() (*resiliencev1.RateLimit, string) {
	p := &resiliencev1.RateLimit{MaxCalls: r.MaxCalls, Burst: r.Burst, MaxInFlight: r.MaxInFlight}
	if r.hasRate() {
		p.TimeWindow = durationpb.New(r.Window)
	}
	if r.MaxInFlight != 0 || r.InFlightLease != 0 {
		p.InFlightLease = durationpb.New(r.InFlightLease)
	}
	return p, ""
}

// hasRate reports whether r has a token bucket (a concurrency limit alone
// has none).
func (r RateLimit) hasRate() bool {
	return r.MaxCalls != 0 || r.Window != 0 || r.Burst != 0 || (r.MaxInFlight == 0 && r.InFlightLease == 0)
}

func (r RateLimit) local(*Client) (limiter.Limit, limiter.Slots, bool) {
	var lim limiter.Limit
	if r.hasRate() {
		lim = limiter.Limit{MaxCalls: r.MaxCalls, Window: r.Window, Burst: r.Burst}
	}
	return lim, limiter.Slots{MaxInFlight: r.MaxInFlight, Lease: r.InFlightLease}, true
}

// Policy names a limit in the server's configuration (`limits:`). Locally
// (service unreachable) it is decided with the limit given by
// WithLocalPolicy, or admitted when there is none.
type Policy string

func (p Policy) proto() (*resiliencev1.RateLimit, string) { return nil, string(p) }

func (p Policy) hasRate() bool { return true }

func (p Policy) local(c *Client) (limiter.Limit, limiter.Slots, bool) {
	r, ok := c.o.localPolicies[string(p)]
	if !ok {
		return limiter.Limit{}, limiter.Slots{}, false
	}
	return r.local(c)
}

// Decision is the answer to a rate-limit (and breaker) check.
type Decision struct {
	// Allowed says whether the call may go now.
	Allowed bool
	// Reason says why.
	Reason Reason
	// Remaining is the number of whole tokens left in the bucket (of the
	// first limit, with several).
	Remaining int64
	// RetryAfter is, when refused, how long until the call could be
	// admitted (with several limits, the longest of the refusing ones').
	RetryAfter time.Duration
	// ResetAfter is how long until the bucket is full again.
	ResetAfter time.Duration
	// Waited is how long the call was held for reserved tokens.
	Waited time.Duration
	// BreakerState is the breaker's state at decision time, when a breaker
	// was asked (StateClosed otherwise).
	BreakerState breaker.State
	// Degraded is true when the decision holds for one replica or process
	// only: the service decided without its shared store, or the SDK
	// decided locally (then Local is true too).
	Degraded bool
	// Local is true when the SDK decided without the service.
	Local bool

	// Limits is every limit's own answer, in order (the key first, then
	// each AndLimit), when the call named several limits or a concurrency
	// limit, or was a dry run: "why was I limited". Nil otherwise.
	Limits []LimitDecision
	// LimitedBy is, when a limit refused the call, the key of the one with
	// the longest RetryAfter (the one to read first in Limits).
	LimitedBy string
	// ShadowReason is what a policy in shadow mode (server configuration)
	// would have answered when it would have refused the call, which went
	// on: ReasonAllowed when none would have.
	ShadowReason Reason
	// SlotToken identifies the concurrency slots the admitted call holds on
	// the service ("" for none, or when they were taken locally). Release
	// them with Client.Release(ctx, d) when the call ends.
	SlotToken string

	localSlots *localSlots // slots taken from the local limiter
}

// HoldsSlots reports whether the admitted call holds concurrency slots,
// to give back with Client.Release.
func (d Decision) HoldsSlots() bool { return d.SlotToken != "" || d.localSlots != nil }

// localSlots are the slots a local decision took.
type localSlots struct {
	id   string
	keys []string
}

// LimitDecision is one limit's answer within a Decision.
type LimitDecision struct {
	// Key is the limit's key.
	Key string
	// Allowed says whether this limit alone admits the call: a limit can
	// admit a call another refused (it was then not charged).
	Allowed bool
	// Reason is ReasonRateLimited, ReasonUpstreamThrottled or
	// ReasonConcurrencyLimited when this limit refuses, ReasonAllowed
	// otherwise.
	Reason Reason
	// Remaining is the bucket's whole tokens after the decision (0 for a
	// concurrency limit alone).
	Remaining int64
	// RetryAfter is, when this limit refuses, how long until it would
	// admit the call; ResetAfter how long until its bucket is full.
	RetryAfter, ResetAfter time.Duration
	// InFlight is, for a concurrency limit, the slots held on the key after
	// the decision.
	InFlight int64
	// Shadow is true for a limit in shadow mode: never enforced.
	Shadow bool
}

// CheckOption configures Check: Cost, DryRun, AndLimit.
type CheckOption interface{ applyCheck(*callOptions) }

// WaitOption configures Wait: Cost, MaxWait, AndLimit.
type WaitOption interface{ applyWait(*callOptions) }

// AllowOption configures Allow, Do and Call: Cost, MaxWait, WithRateLimit,
// AndLimit.
type AllowOption interface{ applyAllow(*callOptions) }

// CallOption is an option that every method takes (Cost).
//
// Deprecated: each method has its own option type (CheckOption, WaitOption,
// AllowOption), so that an option a method would ignore does not compile.
type CallOption interface {
	CheckOption
	WaitOption
	AllowOption
}

type callOptions struct {
	cost    int64
	maxWait time.Duration
	hasWait bool
	dryRun  bool
	key     string
	limit   Limit
	more    []KeyLimit
}

// optionsOf is what opts set, each through apply (the method of its
// option type, for example CheckOption.applyCheck), in order.
func optionsOf[O any](opts []O, apply func(O, *callOptions)) callOptions {
	var o callOptions
	for _, opt := range opts {
		apply(opt, &o)
	}
	return o
}

// CostOption sets the tokens a call takes; see Cost.
type CostOption int64

// Cost sets the tokens the call takes (default 1): an option of Check,
// Wait, Allow, Do and Call.
func Cost(n int64) CostOption { return CostOption(n) }

func (o CostOption) applyCheck(c *callOptions) { c.cost = int64(o) }
func (o CostOption) applyWait(c *callOptions)  { c.cost = int64(o) }
func (o CostOption) applyAllow(c *callOptions) { c.cost = int64(o) }

// MaxWaitOption bounds how long a call may wait for tokens; see MaxWait.
type MaxWaitOption time.Duration

// MaxWait bounds how long the call may wait for tokens (and, with a
// concurrency limit, for a free slot, first come first served): an option
// of Wait (default: until the context's deadline) and of Allow, Do and Call
// (default 0: answer at once).
func MaxWait(d time.Duration) MaxWaitOption { return MaxWaitOption(max(d, 0)) }

func (o MaxWaitOption) applyWait(c *callOptions)  { c.maxWait, c.hasWait = time.Duration(o), true }
func (o MaxWaitOption) applyAllow(c *callOptions) { c.maxWait, c.hasWait = time.Duration(o), true }

// DryRunOption makes Check take nothing; see DryRun.
type DryRunOption struct{}

// DryRun makes Check answer without taking tokens (or a breaker's probe
// slot, or a concurrency slot).
func DryRun() DryRunOption { return DryRunOption{} }

func (DryRunOption) applyCheck(c *callOptions) { c.dryRun = true }

// RateLimitOption adds a rate limit to a breaker's decision; see
// WithRateLimit.
type RateLimitOption struct {
	key   string
	limit Limit
}

// WithRateLimit makes Allow, Do and Call also take a token of key under
// lim, in the same decision as the breaker's.
func WithRateLimit(key string, lim Limit) RateLimitOption {
	return RateLimitOption{key: key, limit: lim}
}

func (o RateLimitOption) applyAllow(c *callOptions) { c.key, c.limit = o.key, o.limit }

// KeyLimit is one more limit of a call: Key under Limit, taking Cost tokens
// (0 means 1; a concurrency slot is one whatever the cost). Build it with
// AndLimit, or as a literal in Route.And. It is a plain value.
type KeyLimit struct {
	Key   string
	Limit Limit
	Cost  int64
}

// AndLimit adds the limit lim of key to a call (an option of Check, Wait,
// Allow, Do and Call; give it once per limit): the call is admitted only
// when every limit admits it, all or nothing: when any refuses, none is
// charged, and the Decision's RetryAfter is the longest and LimitedBy
// names the refusing key. At most 8 limits per call, keys distinct. See
// KeyLimit.WithCost for a cost of its own.
func AndLimit(key string, lim Limit) KeyLimit { return KeyLimit{Key: key, Limit: lim} }

// WithCost returns k taking n tokens.
func (k KeyLimit) WithCost(n int64) KeyLimit { k.Cost = n; return k }

func (k KeyLimit) applyCheck(c *callOptions) { c.more = append(c.more, k) }
func (k KeyLimit) applyWait(c *callOptions)  { c.more = append(c.more, k) }
func (k KeyLimit) applyAllow(c *callOptions) { c.more = append(c.more, k) }

// acquireReq is one decision to ask for.
type acquireReq struct {
	key     string
	limit   Limit
	cost    int64
	more    []KeyLimit
	maxWait time.Duration
	breaker string
	dryRun  bool
}

// admitted is a decision with what ReportOutcome needs.
type admitted struct {
	Decision
	permit     string
	generation uint64
}

// maxWaitChunk bounds the max_wait of one Acquire; Wait asks again after it.
const maxWaitChunk = time.Minute

// validate checks what the SDK can check before sending r.
func (r *acquireReq) validate() error {
	if r.key != "" && r.limit == nil {
		return fmt.Errorf("%w: key %q needs a limit (RateLimit or Policy)", ErrInvalidArgument, r.key)
	}
	for i, m := range r.more {
		if m.Key == "" || m.Limit == nil {
			return fmt.Errorf("%w: limit %d (AndLimit) needs a key and a limit", ErrInvalidArgument, i)
		}
	}
	if r.key == "" && r.breaker == "" && len(r.more) == 0 {
		return fmt.Errorf("%w: a key or a breaker is required", ErrInvalidArgument)
	}
	return nil
}

// acquire asks the service (or the local state) for one decision.
func (c *Client) acquire(ctx context.Context, r acquireReq) (admitted, error) {
	if err := r.validate(); err != nil {
		return admitted{}, err
	}
	if dl, ok := ctx.Deadline(); ok {
		r.maxWait = min(r.maxWait, max(time.Until(dl), 0))
	}
	r.maxWait = min(r.maxWait, maxWaitChunk)
	req := &resiliencev1.AcquireRequest{Key: r.key, Cost: r.cost, Breaker: r.breaker, DryRun: r.dryRun}
	if r.key != "" {
		req.Limit, req.Policy = r.limit.proto()
	}
	if len(r.more) > 0 {
		req.Limits = make([]*resiliencev1.LimitRequest, len(r.more))
		for i, m := range r.more {
			lr := &resiliencev1.LimitRequest{Key: m.Key, Cost: m.Cost}
			lr.Limit, lr.Policy = m.Limit.proto()
			req.Limits[i] = lr
		}
	}
	if r.maxWait > 0 {
		req.MaxWait = durationpb.New(r.maxWait)
	}
	resp, err := invokeFor(ctx, c, r.maxWait, c.rs.Acquire, req)
	if err != nil {
		if c.local(err) {
			return c.localAcquire(ctx, r)
		}
		return admitted{}, err
	}
	a := admitted{
		Decision: Decision{
			Allowed:      resp.GetAllowed(),
			Reason:       reasonOf(resp.GetReason()),
			Remaining:    resp.GetRemaining(),
			RetryAfter:   resp.GetRetryAfter().AsDuration(),
			ResetAfter:   resp.GetResetAfter().AsDuration(),
			Waited:       resp.GetWaited().AsDuration(),
			BreakerState: stateOf(resp.GetBreakerState()),
			Degraded:     resp.GetDegraded(),
			LimitedBy:    resp.GetLimitedBy(),
			ShadowReason: reasonOf(resp.GetShadowReason()),
			SlotToken:    resp.GetSlotToken(),
		},
		permit:     resp.GetPermitId(),
		generation: resp.GetBreakerGeneration(),
	}
	if lds := resp.GetLimits(); len(lds) > 0 {
		a.Limits = make([]LimitDecision, len(lds))
		for i, ld := range lds {
			a.Limits[i] = LimitDecision{
				Key:        ld.GetKey(),
				Allowed:    ld.GetAllowed(),
				Reason:     reasonOf(ld.GetReason()),
				Remaining:  ld.GetRemaining(),
				RetryAfter: ld.GetRetryAfter().AsDuration(),
				ResetAfter: ld.GetResetAfter().AsDuration(),
				InFlight:   ld.GetInFlight(),
				Shadow:     ld.GetShadow(),
			}
		}
	}
	return a, nil
}

func reasonOf(r resiliencev1.AcquireReason) Reason {
	switch r {
	case resiliencev1.AcquireReason_ACQUIRE_REASON_RATE_LIMITED:
		return ReasonRateLimited
	case resiliencev1.AcquireReason_ACQUIRE_REASON_CIRCUIT_OPEN:
		return ReasonCircuitOpen
	case resiliencev1.AcquireReason_ACQUIRE_REASON_UPSTREAM_THROTTLED:
		return ReasonUpstreamThrottled
	case resiliencev1.AcquireReason_ACQUIRE_REASON_CONCURRENCY_LIMITED:
		return ReasonConcurrencyLimited
	}
	return ReasonAllowed
}

func stateOf(s resiliencev1.CircuitState) breaker.State {
	switch s {
	case resiliencev1.CircuitState_CIRCUIT_STATE_OPEN:
		return breaker.StateOpen
	case resiliencev1.CircuitState_CIRCUIT_STATE_HALF_OPEN:
		return breaker.StateHalfOpen
	}
	return breaker.StateClosed
}

// localAcquire decides r with the local breakers and limits, through the
// same admission decision as the service's (package admission): the
// breaker first, then the limits, all or nothing, a refused call or a
// caller who leaves giving back its probe, its reservations and its
// slots. Several limits and concurrency limits are honoured with this
// process's state only: a fleet-wide MaxInFlight of 20 becomes 20 per
// process while the service is unreachable. A Policy without a local limit
// (WithLocalPolicy) is left out of the decision (admitted).
func (c *Client) localAcquire(ctx context.Context, r acquireReq) (admitted, error) {
	req := admission.Request{MaxWait: r.maxWait}
	if r.breaker != "" {
		req.Circuit = &admission.Circuit{Name: r.breaker, Settings: c.o.breakerSettings(r.breaker)}
	}
	var (
		limits [1]limiter.Request
		keys   [1]string // the key of each of req.Limits
	)
	lreqs, lkeys := limits[:0], keys[:0]
	add := func(key string, l Limit, cost int64) {
		if lim, slots, ok := l.local(c); ok { // a policy the SDK does not know: fail open
			lreqs = append(lreqs, limiter.Request{Key: key, Limit: lim, Cost: max(cost, 1), Slots: slots})
			lkeys = append(lkeys, key)
		}
	}
	if r.key != "" {
		add(r.key, r.limit, r.cost)
	}
	for _, m := range r.more {
		add(m.Key, m.Limit, m.Cost)
	}
	if len(lreqs) > 0 {
		req.Limits = lreqs
	}
	decide := c.adm.Decide
	if r.dryRun {
		decide = c.adm.Peek
	}
	d, err := decide(ctx, req)
	if err != nil {
		return admitted{}, localError(err)
	}
	a := admitted{
		Decision: Decision{
			Allowed:      d.Allowed,
			Reason:       localReason(d.Reason),
			Remaining:    d.Limit.Remaining,
			RetryAfter:   d.RetryAfter,
			ResetAfter:   d.Limit.ResetAfter,
			Waited:       d.Waited,
			BreakerState: d.Breaker.State,
			Degraded:     true,
			Local:        true,
		},
		permit:     d.Breaker.PermitID,
		generation: d.Breaker.Generation,
	}
	if d.LimitedBy >= 0 && d.LimitedBy < len(lkeys) {
		a.LimitedBy = lkeys[d.LimitedBy]
	}
	if len(d.Limits) > 0 {
		a.Limits = make([]LimitDecision, len(d.Limits))
		for i, res := range d.Limits {
			a.Limits[i] = localLimitDecision(lkeys[i], res)
		}
	}
	if d.SlotID != "" {
		s := &localSlots{id: d.SlotID}
		for i, lr := range lreqs {
			if lr.Slots.Enabled() {
				s.keys = append(s.keys, lkeys[i])
			}
		}
		a.localSlots = s
	}
	return a, nil
}

// localLimitDecision is the LimitDecision of a local limit's result.
func localLimitDecision(key string, res limiter.Result) LimitDecision {
	ld := LimitDecision{Key: key, Allowed: res.Allowed, Remaining: res.Remaining, ResetAfter: res.ResetAfter, InFlight: res.InFlight}
	if !res.Allowed {
		ld.RetryAfter, ld.Reason = res.RetryAfter, localReason(admission.LimitReason(res))
	}
	return ld
}

// localReason is the SDK's Reason of the local fallback's r (ReasonAllowed
// for a reason it does not know).
func localReason(r admission.Reason) Reason {
	if r >= 0 && int(r) < len(admissionReasons) {
		return admissionReasons[r]
	}
	return ReasonAllowed
}

// release gives back an unused local probe lease.
func (c *Client) release(name, permit string) {
	if permit != "" {
		_ = c.brk.Release(context.Background(), name, permit)
	}
}

// localError marks a validation error of the local state as the caller's.
func localError(err error) error {
	var lie *limiter.InvalidArgumentError
	if errors.As(err, &lie) || errors.Is(err, breaker.ErrInvalidName) || errors.Is(err, breaker.ErrInvalidSettings) {
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	return err
}

// Check takes tokens of key under lim (and of every AndLimit, all or
// nothing) if they are there now and says so; it never waits. A refusal is
// a Decision with Allowed false and RetryAfter, not an error. With DryRun
// it takes nothing. A Decision that holds concurrency slots (HoldsSlots)
// must be given back with Release when the call ends. Errors:
// the context's, a gRPC status from the service (INVALID_ARGUMENT,
// NOT_FOUND for an unknown policy, UNAVAILABLE for a deny policy while the
// shared store is down), ErrInvalidArgument, or ErrServiceUnavailable under
// WithFailClosed.
func (c *Client) Check(ctx context.Context, key string, lim Limit, opts ...CheckOption) (Decision, error) {
	o := optionsOf(opts, CheckOption.applyCheck)
	if key == "" {
		return Decision{}, fmt.Errorf("%w: key is required", ErrInvalidArgument)
	}
	a, err := c.acquire(ctx, acquireReq{key: key, limit: lim, cost: o.cost, more: o.more, dryRun: o.dryRun})
	return a.Decision, err
}

// Wait takes tokens of key under lim (and of every AndLimit, all or
// nothing), waiting for them up to MaxWait (default: no bound but the
// context's deadline). The service reserves tokens that will be there in
// time (and queues the call for a concurrency slot, first come first
// served) and holds the call until then; Wait asks again when told to retry
// within its bound, or when the key is paused for its upstream
// (ReasonUpstreamThrottled) until a time within it. A Decision that holds
// concurrency slots must be given back with Release. It never waits past the context's deadline: when
// the tokens cannot be there in time it returns at once with a
// *RejectedError (errors.Is ErrRateLimited) carrying RetryAfter, and the
// Decision. Other errors: as Check.
func (c *Client) Wait(ctx context.Context, key string, lim Limit, opts ...WaitOption) (Decision, error) {
	o := optionsOf(opts, WaitOption.applyWait)
	if key == "" {
		return Decision{}, fmt.Errorf("%w: key is required", ErrInvalidArgument)
	}
	start := c.o.now()
	var waited time.Duration
	dl, hasDeadline := ctx.Deadline()
	bounded := o.hasWait || hasDeadline
	for {
		left := maxWaitChunk
		if o.hasWait {
			left = o.maxWait - c.o.now().Sub(start)
		}
		if hasDeadline {
			left = min(left, time.Until(dl))
		}
		left = max(left, 0)
		a, err := c.acquire(ctx, acquireReq{key: key, limit: lim, cost: o.cost, more: o.more, maxWait: left})
		if err != nil {
			return a.Decision, err
		}
		a.Waited += waited
		if a.Allowed {
			return a.Decision, nil
		}
		rej := rejection(a.Decision, "", key)
		if (a.Reason != ReasonRateLimited && a.Reason != ReasonUpstreamThrottled) || a.RetryAfter <= 0 || (bounded && a.RetryAfter > left) {
			return a.Decision, rej
		}
		// The tokens were promised within the bound but not reserved (the
		// answer came from a deny cache or a racing caller): sleep and ask
		// again.
		t := time.NewTimer(a.RetryAfter)
		select {
		case <-t.C:
			waited += a.RetryAfter
		case <-ctx.Done():
			t.Stop()
			return a.Decision, ctx.Err()
		}
	}
}
