package retry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/topdeck/resilience/internal/defaults"
)

// Defaults used for the zero fields of Config.
const (
	DefaultMaxAttempts  = 3
	DefaultInitialDelay = 100 * time.Millisecond
	DefaultMaxDelay     = 10 * time.Second
	DefaultMultiplier   = 2.0
)

// Clock is the time source of Do. The zero Config uses the real clock.
// Implementations must be safe for concurrent use when one Config is shared
// by concurrent calls.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

// Rand is the source of jitter. *rand.Rand of math/rand/v2 satisfies it (but
// is not safe for concurrent use: do not share one between concurrent Do
// calls). The zero Config uses math/rand/v2's goroutine-safe top-level source.
type Rand interface {
	// Int64N returns a uniform number in [0, n); n > 0.
	Int64N(n int64) int64
}

// Config controls Do. The zero value is usable: 3 attempts, delays from
// 100ms doubling up to 10s, the real clock and randomness, and
// DefaultRetryable. A Config is a plain value, safe to copy and share
// (as long as its Clock and Rand are).
type Config struct {
	// MaxAttempts is the number of calls at most, the first included.
	// 0 means DefaultMaxAttempts; a negative value means no limit (only the
	// context ends the attempts).
	MaxAttempts int
	// InitialDelay caps the first delay (default 100ms).
	InitialDelay time.Duration
	// MaxDelay caps every backoff delay (default 10s). A server's
	// retry-after is not capped by it.
	MaxDelay time.Duration
	// Multiplier grows the cap of each delay (default 2; values < 1 mean 1).
	Multiplier float64
	// Retryable says whether an error may be retried (default
	// DefaultRetryable). Errors wrapped with Permanent and context errors
	// are never retried, whatever it says.
	Retryable func(error) bool
	// OnRetry, when set, is called before each sleep with the attempt that
	// failed (1-based), its error and the delay chosen.
	OnRetry func(attempt int, err error, delay time.Duration)
	// Clock is the time source (default: the real clock).
	Clock Clock
	// Rand is the jitter source (default: math/rand/v2).
	Rand Rand
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

type globalRand struct{}

func (globalRand) Int64N(n int64) int64 { return rand.Int64N(n) }

func (c Config) withDefaults() Config {
	c.MaxAttempts = cmp.Or(c.MaxAttempts, DefaultMaxAttempts)
	c.InitialDelay = defaults.Positive(c.InitialDelay, DefaultInitialDelay)
	c.MaxDelay = defaults.Positive(c.MaxDelay, DefaultMaxDelay)
	c.Multiplier = max(cmp.Or(c.Multiplier, DefaultMultiplier), 1)
	if c.Retryable == nil {
		c.Retryable = DefaultRetryable
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Rand == nil {
		c.Rand = globalRand{}
	}
	return c
}

// Backoff returns the cap of the delay after failed attempt n (1-based):
// min(MaxDelay, InitialDelay * Multiplier^(n-1)). The delay Do sleeps is a
// uniform random duration in [0, Backoff(n)].
func (c Config) Backoff(n int) time.Duration {
	c = c.withDefaults()
	if n < 1 {
		n = 1
	}
	d := float64(c.InitialDelay) * math.Pow(c.Multiplier, float64(n-1))
	if d >= float64(c.MaxDelay) || math.IsInf(d, 0) || math.IsNaN(d) {
		return c.MaxDelay
	}
	return time.Duration(d)
}

// Do calls fn until it succeeds, fails permanently, the attempts are used up,
// or the next delay would end after ctx's deadline; it returns nil or the
// last error (unwrapped from Permanent). When ctx ends during a sleep, Do
// returns an error matching both ctx.Err() and the last error.
//
// Do is safe for concurrent use with a shared Config whose Clock and Rand are.
func Do(ctx context.Context, cfg Config, fn func(ctx context.Context) error) error {
	_, err := DoValue(ctx, cfg, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, fn(ctx)
	})
	return err
}

// DoValue is Do for a function that returns a value: the value of the
// successful call, or the zero value with the last error.
func DoValue[T any](ctx context.Context, cfg Config, fn func(ctx context.Context) (T, error)) (T, error) {
	cfg = cfg.withDefaults()
	var zero T
	for attempt := 1; ; attempt++ {
		v, err := fn(ctx)
		if err == nil {
			return v, nil
		}
		if pe := (*permanentError)(nil); errors.As(err, &pe) {
			return zero, pe.err
		}
		if ctx.Err() != nil || errors.Is(err, context.Canceled) || !cfg.Retryable(err) {
			return zero, err
		}
		if cfg.MaxAttempts > 0 && attempt >= cfg.MaxAttempts {
			return zero, err
		}
		delay := cfg.delay(attempt, err)
		if dl, ok := ctx.Deadline(); ok && cfg.Clock.Now().Add(delay).After(dl) {
			return zero, err
		}
		if cfg.OnRetry != nil {
			cfg.OnRetry(attempt, err, delay)
		}
		if delay > 0 {
			select {
			case <-cfg.Clock.After(delay):
			case <-ctx.Done():
				return zero, fmt.Errorf("retry: %w after attempt %d: %w", ctx.Err(), attempt, err)
			}
		}
	}
}

// delay picks the sleep after failed attempt n with error err.
func (c Config) delay(n int, err error) time.Duration {
	d := time.Duration(0)
	if b := c.Backoff(n); b > 0 {
		d = time.Duration(c.Rand.Int64N(int64(b) + 1))
	}
	if ra, ok := RetryAfter(err); ok && ra > d {
		d = ra
	}
	return d
}

// RetryAfter returns the delay a server asked for in err, if any: the first
// error in the chain implementing RetryAfter() time.Duration with a positive
// answer, else the RetryInfo detail of a gRPC status in the chain.
func RetryAfter(err error) (time.Duration, bool) {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		if d := ra.RetryAfter(); d > 0 {
			return d, true
		}
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		for _, d := range se.GRPCStatus().Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
				if d := ri.GetRetryDelay().AsDuration(); d > 0 {
					return d, true
				}
			}
		}
	}
	return 0, false
}

// permanentCodes are the gRPC codes DefaultRetryable refuses: the request
// itself is wrong and will fail the same way again.
var permanentCodes = map[codes.Code]bool{
	codes.InvalidArgument:    true,
	codes.NotFound:           true,
	codes.PermissionDenied:   true,
	codes.Unauthenticated:    true,
	codes.FailedPrecondition: true,
}

// DefaultRetryable reports whether err may be retried: false for a gRPC
// status (anywhere in the chain) with code InvalidArgument, NotFound,
// PermissionDenied, Unauthenticated or FailedPrecondition, true otherwise.
func DefaultRetryable(err error) bool {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return !permanentCodes[se.GRPCStatus().Code()]
	}
	return true
}

// permanentError marks an error that must not be retried.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// Permanent wraps err so that Do stops at once and returns err. Permanent(nil)
// is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err (or an error it wraps) was marked with
// Permanent.
func IsPermanent(err error) bool {
	var pe *permanentError
	return errors.As(err, &pe)
}

// retryAfterError carries a server's retry-after.
type retryAfterError struct {
	err error
	d   time.Duration
}

func (e *retryAfterError) Error() string             { return e.err.Error() }
func (e *retryAfterError) Unwrap() error             { return e.err }
func (e *retryAfterError) RetryAfter() time.Duration { return e.d }

// WithRetryAfter wraps err with a retry-after that Do honours (the result
// implements RetryAfter() time.Duration). WithRetryAfter(nil, d) is nil.
func WithRetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err: err, d: d}
}
