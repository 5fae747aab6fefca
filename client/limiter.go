package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/topdeck/resilience/admission"
	"github.com/topdeck/resilience/breaker"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/limiter"
)

// Limit is the rate limit of a key: a RateLimit given inline or a Policy
// named in the server's configuration. The interface is closed: those two
// types are the only implementations.
type Limit interface {
	applyTo(req *resiliencev1.AcquireRequest)
	local(c *Client) (limiter.Limit, bool)
}

// RateLimit is an inline token bucket: it holds at most Burst tokens (0 means
// MaxCalls) and refills at MaxCalls per Window. It is a plain value.
type RateLimit struct {
	MaxCalls int64
	Window   time.Duration
	Burst    int64
}

func (r RateLimit) applyTo(req *resiliencev1.AcquireRequest) {
	req.Limit = &resiliencev1.RateLimit{MaxCalls: r.MaxCalls, TimeWindow: durationpb.New(r.Window), Burst: r.Burst}
}

func (r RateLimit) local(*Client) (limiter.Limit, bool) {
	return limiter.Limit{MaxCalls: r.MaxCalls, Window: r.Window, Burst: r.Burst}, true
}

// Policy names a limit in the server's configuration (`limits:`). Locally
// (service unreachable) it is decided with the limit given by
// WithLocalPolicy, or admitted when there is none.
type Policy string

func (p Policy) applyTo(req *resiliencev1.AcquireRequest) { req.Policy = string(p) }

func (p Policy) local(c *Client) (limiter.Limit, bool) {
	r, ok := c.o.localPolicies[string(p)]
	if !ok {
		return limiter.Limit{}, false
	}
	return r.local(c)
}

// Decision is the answer to a rate-limit (and breaker) check.
type Decision struct {
	// Allowed says whether the call may go now.
	Allowed bool
	// Reason says why.
	Reason Reason
	// Remaining is the number of whole tokens left in the bucket.
	Remaining int64
	// RetryAfter is, when refused, how long until the call could be admitted.
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
}

// CheckOption configures Check: Cost, DryRun.
type CheckOption interface{ applyCheck(*callOptions) }

// WaitOption configures Wait: Cost, MaxWait.
type WaitOption interface{ applyWait(*callOptions) }

// AllowOption configures Allow, Do and Call: Cost, MaxWait, WithRateLimit.
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

// MaxWait bounds how long the call may wait for tokens: an option of Wait
// (default: until the context's deadline) and of Allow, Do and Call
// (default 0: answer at once).
func MaxWait(d time.Duration) MaxWaitOption { return MaxWaitOption(max(d, 0)) }

func (o MaxWaitOption) applyWait(c *callOptions)  { c.maxWait, c.hasWait = time.Duration(o), true }
func (o MaxWaitOption) applyAllow(c *callOptions) { c.maxWait, c.hasWait = time.Duration(o), true }

// DryRunOption makes Check take nothing; see DryRun.
type DryRunOption struct{}

// DryRun makes Check answer without taking tokens (or a breaker's probe
// slot).
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

// acquireReq is one decision to ask for.
type acquireReq struct {
	key     string
	limit   Limit
	cost    int64
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

// acquire asks the service (or the local state) for one decision.
func (c *Client) acquire(ctx context.Context, r acquireReq) (admitted, error) {
	if r.key != "" && r.limit == nil {
		return admitted{}, fmt.Errorf("%w: key %q needs a limit (RateLimit or Policy)", ErrInvalidArgument, r.key)
	}
	if r.key == "" && r.breaker == "" {
		return admitted{}, fmt.Errorf("%w: a key or a breaker is required", ErrInvalidArgument)
	}
	if dl, ok := ctx.Deadline(); ok {
		r.maxWait = min(r.maxWait, max(time.Until(dl), 0))
	}
	r.maxWait = min(r.maxWait, maxWaitChunk)
	req := &resiliencev1.AcquireRequest{Key: r.key, Cost: r.cost, Breaker: r.breaker, DryRun: r.dryRun}
	if r.key != "" {
		r.limit.applyTo(req)
	}
	if r.maxWait > 0 {
		req.MaxWait = durationpb.New(r.maxWait)
	}
	var resp *resiliencev1.AcquireResponse
	err := c.invoke(ctx, r.maxWait, func(ctx context.Context, opts ...grpc.CallOption) error {
		var err error
		resp, err = c.rs.Acquire(ctx, req, opts...)
		return err
	})
	if err != nil {
		if c.local(err) {
			return c.localAcquire(ctx, r)
		}
		return admitted{}, err
	}
	return admitted{
		Decision: Decision{
			Allowed:      resp.GetAllowed(),
			Reason:       reasonOf(resp.GetReason()),
			Remaining:    resp.GetRemaining(),
			RetryAfter:   resp.GetRetryAfter().AsDuration(),
			ResetAfter:   resp.GetResetAfter().AsDuration(),
			Waited:       resp.GetWaited().AsDuration(),
			BreakerState: stateOf(resp.GetBreakerState()),
			Degraded:     resp.GetDegraded(),
		},
		permit:     resp.GetPermitId(),
		generation: resp.GetBreakerGeneration(),
	}, nil
}

func reasonOf(r resiliencev1.AcquireReason) Reason {
	switch r {
	case resiliencev1.AcquireReason_ACQUIRE_REASON_RATE_LIMITED:
		return ReasonRateLimited
	case resiliencev1.AcquireReason_ACQUIRE_REASON_CIRCUIT_OPEN:
		return ReasonCircuitOpen
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
// breaker first, then the limit, a refused call or a caller who leaves
// giving back its probe and its reservation.
func (c *Client) localAcquire(ctx context.Context, r acquireReq) (admitted, error) {
	req := admission.Request{MaxWait: r.maxWait}
	if r.breaker != "" {
		req.Circuit = &admission.Circuit{Name: r.breaker, Settings: c.o.breakerSettings(r.breaker)}
	}
	var limits [1]limiter.Request
	if r.key != "" {
		if lim, ok := r.limit.local(c); ok { // a policy the SDK does not know: fail open
			req.Limits = append(limits[:0], limiter.Request{Key: r.key, Limit: lim, Cost: max(r.cost, 1)})
		}
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
	return a, nil
}

func localReason(r admission.Reason) Reason {
	switch r {
	case admission.ReasonRateLimited:
		return ReasonRateLimited
	case admission.ReasonCircuitOpen:
		return ReasonCircuitOpen
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

// Check takes tokens of key under lim if they are there now and says so; it
// never waits. A refusal is a Decision with Allowed
// false and RetryAfter, not an error. With DryRun it takes nothing. Errors:
// the context's, a gRPC status from the service (INVALID_ARGUMENT,
// NOT_FOUND for an unknown policy, UNAVAILABLE for a deny policy while the
// shared store is down), ErrInvalidArgument, or ErrServiceUnavailable under
// WithFailClosed.
func (c *Client) Check(ctx context.Context, key string, lim Limit, opts ...CheckOption) (Decision, error) {
	var o callOptions
	for _, opt := range opts {
		opt.applyCheck(&o)
	}
	if key == "" {
		return Decision{}, fmt.Errorf("%w: key is required", ErrInvalidArgument)
	}
	a, err := c.acquire(ctx, acquireReq{key: key, limit: lim, cost: o.cost, dryRun: o.dryRun})
	return a.Decision, err
}

// Wait takes tokens of key under lim, waiting for them up to MaxWait (default:
// no bound but the context's deadline). The service reserves tokens that will
// be there in time and holds the call until then; Wait asks again when told
// to retry within its bound. It never waits past the context's deadline: when
// the tokens cannot be there in time it returns at once with a
// *RejectedError (errors.Is ErrRateLimited) carrying RetryAfter, and the
// Decision. Other errors: as Check.
func (c *Client) Wait(ctx context.Context, key string, lim Limit, opts ...WaitOption) (Decision, error) {
	var o callOptions
	for _, opt := range opts {
		opt.applyWait(&o)
	}
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
		a, err := c.acquire(ctx, acquireReq{key: key, limit: lim, cost: o.cost, maxWait: left})
		if err != nil {
			return a.Decision, err
		}
		a.Waited += waited
		if a.Allowed {
			return a.Decision, nil
		}
		rej := &RejectedError{Reason: a.Reason, Key: key, RetryAfter: a.RetryAfter, Local: a.Local}
		if a.Reason != ReasonRateLimited || a.RetryAfter <= 0 || (bounded && a.RetryAfter > left) {
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
