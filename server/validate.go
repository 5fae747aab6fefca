package server

import (
	"math"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/internal/grpcerr"
)

// MaxKeyBytes bounds every key and name in the API: the breaker's bound on
// names (breaker.MaxNameBytes), which the configuration's names and the
// cache's keys share.
const MaxKeyBytes = breaker.MaxNameBytes

// invalid returns an INVALID_ARGUMENT status whose message starts with the
// field's name and which carries a BadRequest detail naming it.
func invalid(field, format string, args ...any) error {
	return grpcerr.Invalid(field, format, args...)
}

// checkName validates a key or breaker name. An empty name is an error only
// when required.
func checkName(field, v string, required bool) error {
	switch {
	case v == "" && required:
		return invalid(field, "is required")
	case len(v) > MaxKeyBytes:
		return invalid(field, "is %d bytes, longer than the limit of %d", len(v), MaxKeyBytes)
	}
	return nil
}

// maxDurationSeconds is the largest whole number of seconds a time.Duration
// holds.
const maxDurationSeconds = int64(math.MaxInt64 / time.Second)

// duration converts an optional, non-negative duration. Unset is 0.
func duration(field string, d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, invalid(field, "is not a valid duration: %v", err)
	}
	// AsDuration saturates beyond about 292 years, which would silently
	// change the meaning (a saturated value is not even whole microseconds).
	if d.GetSeconds() > maxDurationSeconds || d.GetSeconds() < -maxDurationSeconds {
		return 0, invalid(field, "must be at most %d s (about 292 years), got %d s", maxDurationSeconds, d.GetSeconds())
	}
	v := d.AsDuration()
	if v < 0 {
		return 0, invalid(field, "must not be negative, got %s", v)
	}
	return v, nil
}
