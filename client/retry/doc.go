// Package retry runs a function again when it fails, with capped exponential
// backoff and full jitter, within the caller's context.
//
// # Guide
//
//	err := retry.Do(ctx, retry.Config{MaxAttempts: 5}, func(ctx context.Context) error {
//		return callUpstream(ctx)
//	})
//
// Attempt n (n = 1 after the first failure) sleeps a random duration in
// [0, min(MaxDelay, InitialDelay * Multiplier^(n-1))] ("full jitter", which
// spreads a fleet's retries out instead of synchronising them).
//
// A server that says when to come back is believed: the delay is at least the
// retry-after found in the error, from
//   - a gRPC status carrying errdetails.RetryInfo,
//   - any error in the chain implementing RetryAfter() time.Duration (the
//     client package's rejections do, and so does [WithRetryAfter]),
//   - an HTTP response turned into an error by [ResponseError], which parses
//     Retry-After in seconds or as an HTTP date ([ParseRetryAfter]).
//
// Do never sleeps past the context's deadline: when the next delay would end
// after it, Do returns the last error at once. Permanent errors stop it at
// once: errors wrapped with [Permanent], and gRPC statuses with the codes
// InvalidArgument, NotFound, PermissionDenied, Unauthenticated and
// FailedPrecondition (see [DefaultRetryable]). Context errors stop it too.
//
// Time and randomness are injected through Config.Clock and Config.Rand, so
// tests run without sleeping.
package retry
