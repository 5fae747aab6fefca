package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/topdeck/resilience/breaker"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

// Allow asks the breaker called name (and, with WithRateLimit, a rate limit)
// to admit one call, in the two-step shape of sony/gobreaker v2: on success
// make the call, then call done with its error (nil for success) exactly once;
// later calls of done do nothing.
//
// done reports the outcome with the permit and breaker generation of the
// admission: a failure when the classifier (WithFailureClassifier) says so, a
// success otherwise, nothing for a cancelled call (its probe lease, if any,
// expires by itself). done is bounded by the call timeout and never fails;
// it reports to the local breaker when the service cannot be reached.
//
// A refused call gets a *RejectedError (errors.Is ErrOpen, or ErrRateLimited
// for the limit) carrying RetryAfter. Other errors: the context's, a gRPC
// status from the service, ErrInvalidArgument, or ErrServiceUnavailable
// under WithFailClosed.
func (c *Client) Allow(ctx context.Context, name string, opts ...AllowOption) (done func(err error), err error) {
	if name == "" {
		return nil, fmt.Errorf("%w: breaker name is required", ErrInvalidArgument)
	}
	var o callOptions
	for _, opt := range opts {
		opt.applyAllow(&o)
	}
	a, err := c.acquire(ctx, acquireReq{key: o.key, limit: o.limit, cost: o.cost, maxWait: o.maxWait, breaker: name})
	if err != nil {
		return nil, err
	}
	if !a.Allowed {
		return nil, &RejectedError{Reason: a.Reason, Breaker: name, Key: o.key, RetryAfter: a.RetryAfter, Local: a.Local}
	}
	start := c.o.now()
	var once sync.Once
	return func(err error) {
		once.Do(func() { c.finish(ctx, name, a, start, err) })
	}, nil
}

// finish reports the outcome of an admitted call.
func (c *Client) finish(ctx context.Context, name string, a admitted, start time.Time, callErr error) {
	report, failed := c.outcomeOf(ctx, callErr)
	if !report {
		if a.Local {
			c.release(name, a.permit)
		}
		return
	}
	outcome := breaker.OutcomeSuccess
	if failed {
		outcome = breaker.OutcomeFailure
	}
	// The report goes even when the caller's context has ended: the outcome
	// happened.
	ctx = context.WithoutCancel(ctx)
	if a.Local {
		_, _ = c.brk.Report(ctx, name, c.o.breakerSettings(name), outcome, a.generation, a.permit)
		return
	}
	req := &resiliencev1.ReportOutcomeRequest{
		Breaker:           name,
		Outcome:           resiliencev1.Outcome_OUTCOME_SUCCESS,
		Latency:           durationpb.New(max(c.o.now().Sub(start), 0)),
		PermitId:          a.permit,
		BreakerGeneration: a.generation,
	}
	if failed {
		req.Outcome = resiliencev1.Outcome_OUTCOME_FAILURE
	}
	err := c.invoke(ctx, 0, func(ctx context.Context, opts ...grpc.CallOption) error {
		_, err := c.rs.ReportOutcome(ctx, req, opts...)
		return err
	})
	if err != nil && c.local(err) {
		// The service admitted the call but cannot hear of it: count it
		// in the local breaker, at its current generation.
		_, _ = c.brk.Report(ctx, name, c.o.breakerSettings(name), outcome, 0, "")
	}
}

// Do runs fn through the breaker called name: Allow, fn, then the report of
// fn's error. It returns fn's error, or Allow's error without calling fn
// (a *RejectedError matching ErrOpen when the breaker is open). fn gets ctx.
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
