package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/topdeck/resilience/breaker"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

// Allow asks the breaker called name (and, with WithRateLimit and
// AndLimit, its limits, all or nothing) to admit one call, in the two-step
// shape of sony/gobreaker v2: on success make the call, then call done with
// its error (nil for success) exactly once; later calls of done do nothing.
//
// done reports the outcome with the permit and breaker generation of the
// admission: a failure when the classifier (WithFailureClassifier) says so, a
// success otherwise, nothing for a cancelled call (its probe lease, if any,
// expires by itself). It also gives back the concurrency slots the call took
// (RateLimit.MaxInFlight), in the same ReportOutcome, even for a cancelled
// call; a done never called leaves them to be reclaimed when their lease
// ends. done is bounded by the call timeout and never fails; it reports to
// the local breaker when the service cannot be reached.
//
// A refused call gets a *RejectedError (errors.Is ErrOpen, or ErrRateLimited
// for a limit) carrying RetryAfter. Other errors: the context's, a gRPC
// status from the service, ErrInvalidArgument, or ErrServiceUnavailable
// under WithFailClosed.
func (c *Client) Allow(ctx context.Context, name string, opts ...AllowOption) (done func(err error), err error) {
	if name == "" {
		return nil, fmt.Errorf("%w: breaker name is required", ErrInvalidArgument)
	}
	o := optionsOf(opts, AllowOption.applyAllow)
	end, err := c.admitCall(ctx, acquireReq{key: o.key, limit: o.limit, cost: o.cost, more: o.more, maxWait: o.maxWait, breaker: name})
	if err != nil {
		return nil, err
	}
	return func(err error) { end(err, Upstream{}) }, nil
}

// admitCall acquires r and, when admitted, returns the func that ends the
// call: once, it reports the outcome to r's breaker, gives back the call's
// slots and passes on what the upstream said of r's key.
func (c *Client) admitCall(ctx context.Context, r acquireReq) (end func(err error, u Upstream), err error) {
	a, err := c.acquire(ctx, r)
	if err != nil {
		return nil, err
	}
	if !a.Allowed {
		return nil, rejection(a.Decision, r.breaker, r.key)
	}
	start := c.o.now()
	var once sync.Once
	return func(err error, u Upstream) {
		once.Do(func() { c.finish(ctx, r, a, start, err, u) })
	}, nil
}

// finish ends an admitted call: the outcome for the breaker (unless the
// call was cancelled), the release of its slots, and the upstream's
// feedback u for its key, in one ReportOutcome (or a Release when there is
// nothing else to say).
func (c *Client) finish(ctx context.Context, r acquireReq, a admitted, start time.Time, callErr error, u Upstream) {
	report := false
	outcome := breaker.OutcomeSuccess
	if r.breaker != "" {
		var failed bool
		report, failed = c.outcomeOf(ctx, callErr)
		if failed {
			outcome = breaker.OutcomeFailure
		}
	}
	// The report goes even when the caller's context has ended: the outcome
	// happened, and the slots must come back.
	ctx = context.WithoutCancel(ctx)
	if a.Local {
		switch {
		case report:
			_, _ = c.brk.Report(ctx, r.breaker, c.o.breakerSettings(r.breaker), outcome, a.generation, a.permit)
		case r.breaker != "":
			c.release(r.breaker, a.permit)
		}
		if a.localSlots != nil {
			_, _ = c.Release(ctx, a.Decision)
		}
		c.pauseLocally(ctx, r.key, r.limit, u)
		return
	}
	fb := feedbackOf(r.key, r.limit, u)
	req := &resiliencev1.ReportOutcomeRequest{SlotToken: a.SlotToken}
	if fb != nil {
		req.Upstream = []*resiliencev1.UpstreamFeedback{fb}
	}
	if report {
		req.Breaker = r.breaker
		req.Outcome = resiliencev1.Outcome_OUTCOME_SUCCESS
		if outcome == breaker.OutcomeFailure {
			req.Outcome = resiliencev1.Outcome_OUTCOME_FAILURE
		}
		req.Latency = durationpb.New(max(c.o.now().Sub(start), 0))
		req.PermitId = a.permit
		req.BreakerGeneration = a.generation
	}
	var err error
	switch {
	case req.Breaker == "" && fb == nil && req.SlotToken == "":
		return // nothing to say
	case req.Breaker == "" && fb == nil:
		_, err = c.Release(ctx, a.Decision)
	default:
		err = c.reportOutcome(ctx, req)
		if err != nil && fb != nil && status.Code(err) == codes.InvalidArgument {
			// The service refused the feedback (a policy whose limit it
			// cannot lower): the outcome and the slots still count.
			req.Upstream = nil
			if req.Breaker == "" {
				_, err = c.Release(ctx, a.Decision)
			} else {
				err = c.reportOutcome(ctx, req)
			}
		}
	}
	if fb != nil {
		c.pauseLocally(ctx, r.key, r.limit, u)
	}
	if err != nil && report && c.local(err) {
		// The service admitted the call but cannot hear of it: count it
		// in the local breaker, at its current generation. Its slots are
		// reclaimed when their lease ends.
		_, _ = c.brk.Report(ctx, r.breaker, c.o.breakerSettings(r.breaker), outcome, 0, "")
	}
}

// reportOutcome sends req.
func (c *Client) reportOutcome(ctx context.Context, req *resiliencev1.ReportOutcomeRequest) error {
	return c.invoke(ctx, 0, func(ctx context.Context, opts ...grpc.CallOption) error {
		_, err := c.rs.ReportOutcome(ctx, req, opts...)
		return err
	})
}

// Do runs fn through the breaker called name: Allow, fn, then the report of
// fn's error and the release of the call's concurrency slots, even when fn
// panics (the panic goes on) or ctx ends. It returns fn's error, or Allow's
// error without calling fn (a *RejectedError matching ErrOpen when the
// breaker is open). fn gets ctx.
func (c *Client) Do(ctx context.Context, name string, fn func(ctx context.Context) error, opts ...AllowOption) error {
	done, err := c.Allow(ctx, name, opts...)
	if err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			done(fmt.Errorf("client: panic in the function run through breaker %q: %v", name, p))
			panic(p)
		}
	}()
	err = fn(ctx)
	done(err)
	return err
}

// Call is Do for a function that returns a value.
func Call[T any](ctx context.Context, c *Client, name string, fn func(ctx context.Context) (T, error), opts ...AllowOption) (T, error) {
	var v T
	err := c.Do(ctx, name, func(ctx context.Context) error {
		var err error
		v, err = fn(ctx)
		return err
	}, opts...)
	return v, err
}
