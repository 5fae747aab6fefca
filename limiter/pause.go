package limiter

import (
	"context"
	"time"
)

// MaxPause bounds an upstream pause: a report asking for longer is cut to
// it, so that no report (a hostile one, or an upstream's "retry in a day")
// locks a key for longer.
const MaxPause = 15 * time.Minute

// Feedback is what an upstream answered to a call made under a key: a
// retry time (a 429's or 503's Retry-After, gRPC RetryInfo) and, when
// known, its remaining quota and the time until that quota is reset. See
// [Limiter.Pause].
//
// The zero value says nothing. A Feedback is a plain value.
type Feedback struct {
	// RetryAfter pauses the key this long (at most MaxPause); 0: no pause.
	RetryAfter time.Duration
	// Remaining, when HasRemaining, is the upstream's remaining quota: the
	// bucket is left with at most this many tokens (never more than it
	// had). It needs Limit, the bucket's limit.
	Remaining    int64
	HasRemaining bool
	// ResetAfter is when the upstream's quota is reset; with Remaining 0
	// it pauses the key until then, as RetryAfter does.
	ResetAfter time.Duration
	// Limit is the bucket's limit, needed for Remaining; the zero Limit
	// when unknown.
	Limit Limit
}

// PauseResult is what a Pause did.
type PauseResult struct {
	// PausedFor is how long the key is paused from now (0: not paused);
	// longer than asked when an earlier report paused it for longer.
	PausedFor time.Duration
	// Clamped reports that the pause asked for was cut to MaxPause.
	Clamped bool
	// Remaining is the bucket's whole tokens after Remaining was applied
	// (0 when no Remaining was given).
	Remaining int64
	// Degraded reports that the pause was recorded in the Limiter's local
	// fallback store only (the shared store failed).
	Degraded bool
}

// Pauser is implemented by a Store that can pause a key for an upstream
// ([MemoryStore] and the Redis store do). While a key is paused, every Take,
// Peek and TakeAll on it refuses with Result.Paused and RetryAfter the
// pause's remaining time, whatever the limit and max_wait.
type Pauser interface {
	// Pause pauses key until at least now+pause (a pause is never
	// shortened: the later of the two ends is kept) when pause > 0, and,
	// when remaining >= 0 and lim is valid, lowers the bucket of key under
	// lim to at most remaining tokens (never raising it). pause must be in
	// [0, MaxPause]. It returns the pause's remaining time and the bucket's
	// tokens after.
	Pause(ctx context.Context, key string, lim Limit, pause time.Duration, remaining int64) (PauseResult, error)
}

// hasRate reports whether l is set at all (a concurrency limit alone has
// the zero Limit).
func (l Limit) hasRate() bool { return l.MaxCalls != 0 || l.Window != 0 || l.Burst != 0 }

// HasRate reports whether l is a rate limit at all, rather than the zero
// Limit of a concurrency limit alone.
func (l Limit) HasRate() bool { return l.hasRate() }

// pauseFor is the pause fb asks for, cut to MaxPause, and whether it was
// cut.
func (fb Feedback) pauseFor() (time.Duration, bool) {
	d := fb.RetryAfter
	if fb.HasRemaining && fb.Remaining == 0 && fb.ResetAfter > d {
		d = fb.ResetAfter
	}
	if d > MaxPause {
		return MaxPause, true
	}
	return max(d, 0), false
}

// Validate reports whether fb is usable: durations not negative, Remaining
// not negative and given with a valid Limit. Errors name retry_after,
// reset_after, remaining or the limit's field.
func (fb Feedback) Validate() error {
	if fb.RetryAfter < 0 {
		return invalid("retry_after", "must not be negative, got %v", fb.RetryAfter)
	}
	if fb.ResetAfter < 0 {
		return invalid("reset_after", "must not be negative, got %v", fb.ResetAfter)
	}
	if fb.HasRemaining {
		if fb.Remaining < 0 {
			return invalid("remaining", "must not be negative, got %d", fb.Remaining)
		}
		if !fb.Limit.hasRate() && fb.Remaining > 0 {
			return invalid("remaining", "needs the key's limit (limit or policy) to lower its bucket")
		}
	}
	if fb.Limit.hasRate() {
		return fb.Limit.Validate()
	}
	return nil
}
