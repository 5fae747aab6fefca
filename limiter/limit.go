package limiter

import (
	"errors"
	"fmt"
	"time"
)

// Limit is a rate-limit policy: a token bucket that holds at most Burst tokens
// and refills at MaxCalls tokens per Window.
//
// Every store computes exactly in integers (see [Params]); Validate keeps the
// numbers within reach: Burst * Window/gcd(MaxCalls, Window in µs) must be at
// most 2^51 µs. That is 71 years of bucket depth when MaxCalls divides Window
// into whole microseconds (100000 per day, 7 per second, 12345 per hour are
// all fine); an awkward pair such as 99991 per day allows a burst of at most
// 26062.
//
// A bucket is keyed by its key alone; when it is used under a Limit other
// than the one it was last charged under, its state carries over as tokens
// used, at most the new Burst (see the package documentation, "Limit
// changes"). Two Limits are the same limit when their [Limit.Params] are
// equal, so 10 per second and 20 per 2 seconds with Burst 10 are one limit.
//
// Build a Limit with [NewLimit]: it validates the numbers once, sets Burst to
// its effective value and keeps the limit's integer form ([Params]), so that
// the Limiter and every Store, which check each Limit they are given, find a
// Limit from NewLimit valid at the cost of three comparisons and never
// compute its greatest common divisor again. A Limit written as a literal is
// valid too when its fields are; it is then checked in full on each use.
// Changing a field of a Limit from NewLimit is allowed: it is then checked
// in full, like a literal.
//
// The zero value is not a valid limit. A Limit is a plain value, safe to copy
// and to share between goroutines.
type Limit struct {
	// MaxCalls is the number of tokens added per Window. Must be > 0.
	MaxCalls int64
	// Window is the refill period. Must be > 0 and a whole number of
	// microseconds (the resolution of every store's clock).
	Window time.Duration
	// Burst is the bucket capacity: the most tokens that can be spent at
	// once. Must be >= 0; 0 means MaxCalls.
	Burst int64

	// checked is what NewLimit validated: zero for a literal Limit.
	checked checked
}

// checked is the MaxCalls and Window that NewLimit validated, with their
// integer form (p.b is the effective Burst).
type checked struct {
	maxCalls int64
	window   time.Duration
	p        params
}

// NewLimit returns the Limit of maxCalls tokens per window with capacity
// burst (0 means maxCalls), validated (see [Limit.Validate], whose error it
// returns) and with Burst set to its effective value. It is the one place
// where a limit is parsed: the server builds inline limits and the
// configuration builds named ones with it.
func NewLimit(maxCalls int64, window time.Duration, burst int64) (Limit, error) {
	l := Limit{MaxCalls: maxCalls, Window: window, Burst: burst}
	if err := l.validate(); err != nil {
		return Limit{}, err
	}
	p := l.params()
	l.Burst = p.b
	l.checked = checked{maxCalls: maxCalls, window: window, p: p}
	return l, nil
}

// Format prints l's exported fields as fmt prints a struct with %v and %+v
// ("{10 1s 5}", "{MaxCalls:10 Window:1s Burst:5}"), leaving out what
// NewLimit keeps, so that a Limit reads the same however it was built.
func (l Limit) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('+') {
		fmt.Fprintf(f, "{MaxCalls:%d Window:%v Burst:%d}", l.MaxCalls, l.Window, l.Burst)
		return
	}
	fmt.Fprintf(f, "{%d %v %d}", l.MaxCalls, l.Window, l.Burst)
}

// trusted reports whether l is a Limit from NewLimit whose fields are still
// the ones it validated.
func (l Limit) trusted() bool {
	return l.checked.p.m != 0 && l.checked.maxCalls == l.MaxCalls && l.checked.window == l.Window && l.checked.p.b == l.Burst
}

// maxScaled bounds the numbers the GCRA arithmetic works with (see params), so
// that the Redis store's Lua, whose numbers are IEEE doubles, computes them
// exactly: 3*maxScaled < 2^53.
const maxScaled = 1 << 51

// Errors returned for invalid input. Errors from [Limit.Validate] and
// [ValidateCall] are *[InvalidArgumentError] values that match
// ErrInvalidArgument with errors.Is; a cost above the burst also matches
// ErrCostExceedsBurst.
var (
	ErrInvalidArgument  = errors.New("limiter: invalid argument")
	ErrCostExceedsBurst = errors.New("limiter: cost exceeds burst")
)

// ErrStoreUnavailable reports that a Store could not decide (Redis
// unreachable, timed out, or a malformed reply). It is never a denial. The
// Limiter wraps store errors with it when the request's FailurePolicy is
// Deny; the Redis store wraps its errors with it too.
var ErrStoreUnavailable = errors.New("limiter: store unavailable")

// InvalidArgumentError reports a bad input field. Field is the wire name of the
// offending field (max_calls, time_window, burst, cost or max_wait) so that a
// server can pass it through as INVALID_ARGUMENT; Error returns a message like
// "limiter: max_calls must be > 0, got 0".
//
// errors.Is(err, ErrInvalidArgument) holds for every InvalidArgumentError, and
// errors.Is(err, Err) for its cause when set (such as ErrCostExceedsBurst).
type InvalidArgumentError struct {
	Field  string // wire name of the field: max_calls, time_window, burst, cost, max_wait
	Reason string // what is wrong, e.g. "must be > 0, got 0"
	Err    error  // optional sentinel cause, e.g. ErrCostExceedsBurst
}

// Error implements error.
func (e *InvalidArgumentError) Error() string {
	return "limiter: " + e.Field + " " + e.Reason
}

// Is reports whether target is ErrInvalidArgument.
func (e *InvalidArgumentError) Is(target error) bool { return target == ErrInvalidArgument }

// Unwrap returns the sentinel cause, if any.
func (e *InvalidArgumentError) Unwrap() error { return e.Err }

func invalid(field, format string, args ...any) error {
	return &InvalidArgumentError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Validate reports whether l is a usable limit. The error is an
// *InvalidArgumentError naming the first offending field, saying what is
// allowed, and naming the field to change when the problem is a combination
// (a burst a bucket of that rate cannot hold, a window too long for its
// max_calls). A Limit from NewLimit is valid without a second check.
func (l Limit) Validate() error {
	if l.trusted() {
		return nil
	}
	return l.validate()
}

// validate checks l's fields in full.
func (l Limit) validate() error {
	if l.MaxCalls <= 0 {
		return invalid("max_calls", "must be at least 1, got %d", l.MaxCalls)
	}
	if l.Window <= 0 {
		return invalid("time_window", "must be positive, got %v", l.Window)
	}
	if l.Window > maxWholeDuration {
		// Only a saturated conversion gets here (a proto Duration or an
		// arithmetic overflow): no time.Duration is longer.
		return invalid("time_window", "is too long: at most %v (about 292 years) can be represented, got %v or more", maxWholeDuration, l.Window)
	}
	if l.Window%time.Microsecond != 0 {
		return invalid("time_window", "must be a whole number of microseconds, got %v", l.Window)
	}
	if l.Burst < 0 {
		return invalid("burst", "must be 0 (meaning max_calls) or more, got %d", l.Burst)
	}
	p := l.params()
	g := l.MaxCalls / p.m // gcd(max_calls, time_window in µs)
	if p.m > maxScaled {
		return invalid("max_calls", "must be at most %d (2^51) after dividing max_calls and time_window in microseconds by their greatest common divisor (%d here), got %d", int64(maxScaled), g, l.MaxCalls)
	}
	if p.w > maxScaled {
		// No burst fits: a token would take more than 2^51 units to refill.
		return invalid("time_window", "is too long for max_calls %d: must be at most %s, got %v", l.MaxCalls, maxWindowFor(g), approx(l.Window))
	}
	if maxBurst := int64(maxScaled) / p.w; p.b > maxBurst {
		if l.Burst == 0 {
			return invalid("burst", "must be set, between 1 and %d, for %d calls per %v: unset, it means max_calls (%d), more than a bucket of that rate can hold", maxBurst, l.MaxCalls, approx(l.Window), l.MaxCalls)
		}
		return invalid("burst", "must be between 1 and %d for %d calls per %v, got %d", maxBurst, l.MaxCalls, approx(l.Window), l.Burst)
	}
	return nil
}

// maxWholeDuration is the longest time.Duration that is a whole number of
// microseconds.
const maxWholeDuration = time.Duration(1<<63-1) / time.Microsecond * time.Microsecond

// maxWindowFor describes the longest window allowed when the greatest common
// divisor of max_calls and the window in microseconds is g: g * 2^51 µs.
func maxWindowFor(g int64) string {
	unit := time.Duration(maxScaled) * time.Microsecond
	if g == 1 {
		return fmt.Sprintf("%v (2^51µs, about 71 years)", unit)
	}
	return fmt.Sprintf("2^51µs (about 71 years) times %d, the greatest common divisor of max_calls and time_window in microseconds", g)
}

// approx formats d, adding its length in years when that is long.
func approx(d time.Duration) string {
	const year = 365 * 24 * time.Hour
	if d < 2*year {
		return d.String()
	}
	return fmt.Sprintf("%v (about %d years)", d, (d+year/2)/year)
}

// ValidateCall reports whether a call of cost with maxWait may be made under
// l: l must be valid, cost must be in [1, burst] and maxWait in [0, the largest
// wait l can represent]. The error is an *InvalidArgumentError naming the
// field; a cost above the burst also matches ErrCostExceedsBurst.
func ValidateCall(l Limit, cost int64, maxWait time.Duration) error {
	if err := l.Validate(); err != nil {
		return err
	}
	if b := l.burst(); cost <= 0 || cost > b {
		e := &InvalidArgumentError{Field: "cost", Reason: fmt.Sprintf("must be between 1 and the burst (%d), got %d", b, cost)}
		if cost > b {
			e.Err = ErrCostExceedsBurst
		}
		return e
	}
	if max := l.MaxWait(); maxWait < 0 || maxWait > max {
		return invalid("max_wait", "must be between 0 and %v for this limit, got %v", max, maxWait)
	}
	return nil
}

// MaxWait is the longest max_wait a call under l may ask for: 2^51 units of
// 1/M microsecond (see [Params]), so that every store's arithmetic stays
// exact. It is hours for the most awkward limits and years for most. l must be
// valid.
func (l Limit) MaxWait() time.Duration {
	return time.Duration(int64(maxScaled)/l.params().m) * time.Microsecond
}

// burst is the effective capacity.
func (l Limit) burst() int64 {
	if l.Burst == 0 {
		return l.MaxCalls
	}
	return l.Burst
}

// Normalized returns l with Burst set to its effective value (MaxCalls when
// Burst is 0) and nothing else: two limits with the same normalized form are
// the same policy, whether they came from NewLimit or a literal, so it is
// the form to compare limits by or key a map with.
func (l Limit) Normalized() Limit {
	return Limit{MaxCalls: l.MaxCalls, Window: l.Window, Burst: l.burst()}
}

// Params is the integer form of a valid Limit used by the GCRA arithmetic, for
// stores that run it elsewhere (the Redis store passes it to its Lua script).
//
// Time is counted in units of 1/M microsecond: one token is W units and the
// bucket holds B*W units. M/W is MaxCalls per Window in lowest terms.
type Params struct {
	M int64 // refill: M tokens per W microseconds, in lowest terms
	W int64 // microseconds per M tokens, in lowest terms
	B int64 // capacity in tokens (the effective burst)
}

// Params returns the integer form of l. l must be valid.
func (l Limit) Params() Params {
	p := l.params()
	return Params{M: p.m, W: p.w, B: p.b}
}

type params struct{ m, w, b int64 }

func (l Limit) params() params {
	if l.trusted() {
		return l.checked.p
	}
	w := int64(l.Window / time.Microsecond)
	g := gcd(l.MaxCalls, w)
	if g == 0 {
		g = 1
	}
	return params{m: l.MaxCalls / g, w: w / g, b: l.burst()}
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
