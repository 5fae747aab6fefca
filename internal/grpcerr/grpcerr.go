// Package grpcerr is the one table from domain errors (limiter, breaker,
// cache) to gRPC statuses, used by the service's API (package server) and by
// its Envoy rate limit service (package envoyrls), so that the two surfaces
// cannot drift apart.
//
// It maps error types and sentinels, never message text: each domain
// package has one {Field, Reason} invalid-argument error type
// (*limiter.InvalidArgumentError, *breaker.InvalidArgumentError,
// *cache.ArgumentError) and one store-failure sentinel
// (limiter.ErrStoreUnavailable, breaker.ErrStoreUnavailable,
// cache.ErrStoreUnavailable).
package grpcerr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/cache"
	"github.com/topdeck/resilience/limiter"
)

// Option changes how Status reads an error.
type Option func(*options)

type options struct {
	limitsConfigured bool
}

// LimitsConfigured says that every limit comes from the server's own
// configuration, never from the caller (Envoy's descriptors): a limiter
// invalid-argument error is then the server's fault, INTERNAL, not the
// caller's INVALID_ARGUMENT.
func LimitsConfigured() Option { return func(o *options) { o.limitsConfigured = true } }

// Status maps err, a domain error met while serving a call with context ctx,
// to a gRPC status error (nil for nil; a status error is returned as it is):
//
//   - the caller's context ended: CANCELLED or DEADLINE_EXCEEDED;
//   - an invalid-argument error of a domain package: INVALID_ARGUMENT naming
//     the field (with a BadRequest detail, see Invalid);
//   - a breaker policy of the server's configuration that the breaker
//     refuses (breaker.ErrInvalidSettings): FAILED_PRECONDITION;
//   - a store failure, or a store call that ran out of the service's own
//     store timeout while the caller's context is live: UNAVAILABLE, with a
//     message that says why without naming the store;
//   - anything else: INTERNAL.
//
// Status is safe for concurrent use.
func Status(ctx context.Context, err error, opts ...Option) error {
	if err == nil {
		return nil
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if cerr := ctx.Err(); cerr != nil {
		return status.FromContextError(cerr).Err()
	}
	var lie *limiter.InvalidArgumentError
	var cae *cache.ArgumentError
	var bae *breaker.InvalidArgumentError
	switch {
	case errors.As(err, &lie) && o.limitsConfigured:
		return status.Error(codes.Internal, "limit in the server configuration is invalid: "+err.Error())
	case errors.As(err, &lie):
		return Invalid(limiterField(lie.Field), "%s", lie.Reason)
	case errors.As(err, &cae):
		// cache.ArgumentError's Reason starts with the field's name.
		return Invalid(cae.Field, "%s", strings.TrimPrefix(cae.Reason, cae.Field+" "))
	case errors.As(err, &bae) && errors.Is(bae, breaker.ErrInvalidSettings):
		return status.Error(codes.FailedPrecondition, "breaker policy in the server configuration is invalid: "+err.Error())
	case errors.As(err, &bae):
		f := bae.Field
		if f == breaker.FieldName {
			f = "breaker"
		}
		return Invalid(f, "%s", bae.Reason)
	case errors.Is(err, breaker.ErrStoreUnavailable):
		return status.Error(codes.Unavailable, "shared store "+storeCause(err))
	case errors.Is(err, limiter.ErrStoreUnavailable):
		return status.Error(codes.Unavailable, "shared store "+storeCause(err)+" and the limit says on_store_failure: deny")
	case errors.Is(err, cache.ErrStoreUnavailable):
		return status.Error(codes.Unavailable, "shared store "+storeCause(err))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The caller's context is live (checked above): this is the
		// service's own store timeout, not the caller's deadline.
		return status.Error(codes.Unavailable, "shared store "+storeCause(err))
	default:
		return status.Error(codes.Internal, err.Error())
	}
}

// Invalid returns an INVALID_ARGUMENT status whose message starts with the
// field's name and which carries a BadRequest detail naming it.
func Invalid(field, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	st := status.New(codes.InvalidArgument, field+": "+msg)
	if d, err := st.WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: msg}},
	}); err == nil {
		st = d
	}
	return st.Err()
}

// storeCause says why the store could not answer without saying where it
// is: callers never see the store's address or its own error text (the
// server's log and metrics have those).
func storeCause(err error) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return "did not answer within the service's store timeout"
	}
	return "unavailable"
}

// limiterField gives the API name of a limiter field: the limit's own fields
// live under "limit." in AcquireRequest.
func limiterField(f string) string {
	switch f {
	case "max_calls", "time_window", "burst":
		return "limit." + f
	}
	return f
}
