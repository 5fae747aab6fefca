package server

import (
	"context"
	"errors"
	"os"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/cache"
	"github.com/topdeck/resilience/limiter"
)

// toStatus maps a domain error met while serving a call with context ctx to a
// gRPC status. It is the one place where domain errors become codes.
//
// DEADLINE_EXCEEDED and CANCELLED are answered only when the caller's own
// context ended; a store call that ran out of the service's own store timeout
// (or failed in any other way) is UNAVAILABLE, however the store's error
// reads.
func toStatus(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if cerr := ctx.Err(); cerr != nil {
		return status.FromContextError(cerr).Err()
	}
	var lie *limiter.InvalidArgumentError
	var cae *cache.ArgumentError
	var bse *breaker.SettingsError
	var bae *breaker.InvalidArgumentError
	switch {
	case errors.As(err, &lie):
		return invalid(limiterField(lie.Field), "%s", lie.Reason)
	case errors.As(err, &cae):
		return invalid(cae.Field, "%s", strings.TrimPrefix(cae.Reason, cae.Field+" "))
	case errors.As(err, &bse):
		return status.Error(codes.FailedPrecondition, "breaker policy in the server configuration is invalid: "+err.Error())
	case errors.As(err, &bae):
		f := bae.Field
		if f == breaker.FieldName {
			f = "breaker"
		}
		return invalid(f, "%s", bae.Reason)
	case errors.Is(err, breaker.ErrInvalidArgument):
		return invalid("page_token", "%v", err)
	case errors.Is(err, breaker.ErrInvalidName):
		return invalid("breaker", "%v", err)
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
