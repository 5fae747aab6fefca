package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/topdeck/resilience/admission"
	"github.com/topdeck/resilience/client/retry"
)

// Sentinel errors; compare with errors.Is.
var (
	// ErrOpen: a circuit breaker refused the call (see *RejectedError).
	ErrOpen = errors.New("client: circuit breaker open")
	// ErrRateLimited: a limit refused the call (a rate limit, a
	// concurrency limit, or a key paused fleet-wide for its upstream), or
	// the upstream asked this process to leave it alone for a while (see
	// *RejectedError).
	ErrRateLimited = errors.New("client: rate limited")
	// ErrConcurrencyLimited: a concurrency limit had all its slots in
	// flight (see *RejectedError); such a rejection matches ErrRateLimited
	// too.
	ErrConcurrencyLimited = errors.New("client: concurrency limited")
	// ErrServiceUnavailable: the resilience service could not be reached
	// (the error also wraps the gRPC status). Limits and breakers decide
	// locally instead unless WithFailClosed was given.
	ErrServiceUnavailable = errors.New("client: resilience service unavailable")
	// ErrDegraded: the service answered without its shared store, so a
	// cache write or delete did not happen.
	ErrDegraded = errors.New("client: shared store degraded")
	// ErrInvalidArgument: a call to the SDK was malformed (missing key or
	// limit) before anything was sent.
	ErrInvalidArgument = errors.New("client: invalid argument")
)

// Reason says why a call was allowed or refused.
type Reason int

// The reasons. The zero value is ReasonAllowed.
const (
	// ReasonAllowed: the call may go.
	ReasonAllowed Reason = iota
	// ReasonRateLimited: the rate limit had no tokens for the call.
	ReasonRateLimited
	// ReasonCircuitOpen: the breaker is open (or half-open with all probes
	// in flight).
	ReasonCircuitOpen
	// ReasonUpstreamRetryAfter: the upstream asked (Retry-After, gRPC
	// RetryInfo) not to be called before a time that has not come yet; the
	// middleware of this process remembered it.
	ReasonUpstreamRetryAfter
	// ReasonUpstreamThrottled: the service paused the limit's key
	// fleet-wide because an upstream said so (reported by any caller, see
	// Upstream); RetryAfter is the pause's remaining time.
	ReasonUpstreamThrottled
	// ReasonConcurrencyLimited: a concurrency limit (RateLimit.MaxInFlight)
	// has all its slots in flight; RetryAfter is a hint (when the oldest
	// lease ends), a release may come sooner.
	ReasonConcurrencyLimited
)

// String returns "allowed", "rate_limited", "circuit_open",
// "upstream_retry_after", "upstream_throttled" or "concurrency_limited":
// the name of the same admission.Reason for every reason but the SDK's own
// ReasonUpstreamRetryAfter.
func (r Reason) String() string {
	if r == ReasonUpstreamRetryAfter {
		return "upstream_retry_after"
	}
	for a, c := range admissionReasons {
		if c == r {
			return admission.Reason(a).String()
		}
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// admissionReasons maps each admission.Reason (the local fallback's
// decisions) to the SDK's Reason.
var admissionReasons = [...]Reason{
	admission.ReasonAllowed:            ReasonAllowed,
	admission.ReasonRateLimited:        ReasonRateLimited,
	admission.ReasonCircuitOpen:        ReasonCircuitOpen,
	admission.ReasonUpstreamThrottled:  ReasonUpstreamThrottled,
	admission.ReasonConcurrencyLimited: ReasonConcurrencyLimited,
}

// RejectedError is the error of a call the SDK did not make: a breaker was
// open (errors.Is(err, ErrOpen)), a rate limit had no tokens, a concurrency
// limit no slot (also errors.Is(err, ErrConcurrencyLimited)), or the
// upstream had asked for a pause (all errors.Is(err, ErrRateLimited)).
//
// RetryAfter says when the call could be admitted. retry.Do honours it: the
// error's chain holds a value with a RetryAfter() method.
type RejectedError struct {
	// Reason says which check refused the call.
	Reason Reason
	// Breaker is the breaker's name, when one was involved.
	Breaker string
	// Key is the limit's key, when one was involved: with several limits,
	// the one that refused (Decision.LimitedBy).
	Key string
	// RetryAfter is how long until the call could be admitted (0 unknown).
	RetryAfter time.Duration
	// Local is true when the SDK decided without the service.
	Local bool
}

// Error returns a message such as
// "client: circuit breaker "ado" open; retry after 12s".
func (e *RejectedError) Error() string {
	var msg string
	switch e.Reason {
	case ReasonCircuitOpen:
		msg = fmt.Sprintf("client: circuit breaker %q open", e.Breaker)
	case ReasonUpstreamRetryAfter:
		msg = fmt.Sprintf("client: upstream asked to wait (%s)", e.scope())
	case ReasonUpstreamThrottled:
		msg = fmt.Sprintf("client: upstream throttled fleet-wide (%s)", e.scope())
	case ReasonConcurrencyLimited:
		msg = fmt.Sprintf("client: concurrency limited (%s)", e.scope())
	default:
		msg = fmt.Sprintf("client: rate limited (%s)", e.scope())
	}
	if e.RetryAfter > 0 {
		msg += "; retry after " + e.RetryAfter.String()
	}
	if e.Local {
		msg += " (local decision)"
	}
	return msg
}

func (e *RejectedError) scope() string {
	if e.Key != "" {
		return "key " + e.Key
	}
	return "breaker " + e.Breaker
}

// Is reports whether target is ErrOpen (Reason CircuitOpen),
// ErrConcurrencyLimited (Reason ConcurrencyLimited) or ErrRateLimited (every
// reason but CircuitOpen).
func (e *RejectedError) Is(target error) bool {
	switch target {
	case ErrOpen:
		return e.Reason == ReasonCircuitOpen
	case ErrConcurrencyLimited:
		return e.Reason == ReasonConcurrencyLimited
	case ErrRateLimited:
		return e.Reason != ReasonCircuitOpen && e.Reason != ReasonAllowed
	}
	return false
}

// rejection is the error of a refused decision d on breaker and key (the
// refusing limit's key when the service said which).
func rejection(d Decision, breaker, key string) *RejectedError {
	if d.LimitedBy != "" {
		key = d.LimitedBy
	}
	return &RejectedError{Reason: d.Reason, Breaker: breaker, Key: key, RetryAfter: d.RetryAfter, Local: d.Local}
}

// Unwrap returns a retry hint carrying RetryAfter, so that retry.Do and
// retry.RetryAfter see it.
func (e *RejectedError) Unwrap() error { return retryHint(e.RetryAfter) }

// retryHint exposes a RejectedError's RetryAfter through the method that
// package retry looks for.
type retryHint time.Duration

func (h retryHint) Error() string             { return "retry after " + time.Duration(h).String() }
func (h retryHint) RetryAfter() time.Duration { return time.Duration(h) }

// callerCodes are gRPC codes that say the request itself was wrong: the
// upstream answered, so it is not failing.
var callerCodes = map[codes.Code]bool{
	codes.InvalidArgument:    true,
	codes.NotFound:           true,
	codes.AlreadyExists:      true,
	codes.PermissionDenied:   true,
	codes.Unauthenticated:    true,
	codes.FailedPrecondition: true,
	codes.OutOfRange:         true,
}

// IsCallerError reports whether err says that the caller's own request was
// wrong rather than that the upstream failed: ErrInvalidArgument, a gRPC
// status with code InvalidArgument, NotFound, AlreadyExists,
// PermissionDenied, Unauthenticated, FailedPrecondition or OutOfRange, or a
// *retry.HTTPError with a 4xx status other than 408 and 429.
func IsCallerError(err error) bool {
	if errors.Is(err, ErrInvalidArgument) {
		return true
	}
	var he *retry.HTTPError
	if errors.As(err, &he) {
		return he.StatusCode >= 400 && he.StatusCode < 500 &&
			he.StatusCode != 408 && he.StatusCode != 429
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return callerCodes[se.GRPCStatus().Code()]
	}
	return false
}

// DefaultIsFailure is the default failure classifier of Do, Call and Allow:
// every error counts as a failure of the upstream except nil, context
// cancellations, the SDK's own rejections (ErrOpen, ErrRateLimited from a
// nested call) and caller errors (IsCallerError).
func DefaultIsFailure(err error) bool {
	switch {
	case err == nil, errors.Is(err, context.Canceled), status.Code(err) == codes.Canceled:
		return false
	case errors.Is(err, ErrOpen), errors.Is(err, ErrRateLimited):
		return false
	}
	return !IsCallerError(err)
}

// outcomeOf classifies the error of a call run through a breaker: report
// nothing (cancelled), success, or failure.
func (c *Client) outcomeOf(ctx context.Context, err error) (report, failed bool) {
	if err == nil {
		return true, false
	}
	if errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled || errors.Is(ctx.Err(), context.Canceled) {
		return false, false
	}
	if f := (failure{}); errors.As(err, &f) {
		return true, true // the middleware's classifier decided
	}
	if IsCallerError(err) {
		return true, false
	}
	return true, c.o.isFailure(err)
}
