package breaker

import (
	"cmp"
	"fmt"
	"math"
	"time"

	"github.com/topdeck/resilience/internal/enum"
)

// Mode selects what opens a CLOSED breaker. The zero value is ModeConsecutive.
type Mode uint8

const (
	// ModeConsecutive opens after FailureThreshold failures in a row.
	ModeConsecutive Mode = 0
	// ModeFailureRate opens when, over the rolling Window, at least
	// MinimumCalls outcomes were reported and failures/calls >=
	// FailureRateThreshold. FailureThreshold is not used in this mode.
	ModeFailureRate Mode = 1
)

var modeNames = []string{ModeConsecutive: "consecutive", ModeFailureRate: "failure_rate"}

// String returns "consecutive" or "failure_rate".
func (m Mode) String() string { return enum.Name("Mode", m, modeNames) }

// Default values that WithDefaults puts in zero fields.
const (
	DefaultFailureThreshold     = 5
	DefaultFailureRateThreshold = 0.5
	DefaultWindow               = 60 * time.Second
	DefaultMinimumCalls         = 20
	DefaultRecoveryTimeout      = 30 * time.Second
	DefaultHalfOpenMaxCalls     = 1
	DefaultSuccessThreshold     = 1
	DefaultProbeTimeout         = 10 * time.Second
)

// Upper bounds checked by Validate.
const (
	maxCount    = 1_000_000
	maxDuration = 366 * 24 * time.Hour
	minDuration = time.Millisecond
	// WindowBuckets is the number of buckets of the rolling window in
	// ModeFailureRate; each bucket spans Window/WindowBuckets.
	WindowBuckets = 10
)

// Settings is the policy of one breaker. It is passed on every call, so a
// changed policy applies at once. A zero field means its default (see
// WithDefaults); a negative or out-of-range field is an error from Validate.
// The zero value is a valid policy: consecutive mode with every default.
//
// Build the Settings of a configured policy once with [NewSettings] (which
// validates and fills the defaults) and pass that on every call: the stores
// check what they are given (Prepare) but no longer find anything to fill.
//
// Settings is a plain value, safe to copy and to share read-only.
type Settings struct {
	// Mode selects consecutive-failure or failure-rate tripping.
	// Default ModeConsecutive.
	Mode Mode
	// FailureThreshold is the number of consecutive failures that opens a
	// CLOSED breaker in ModeConsecutive. Default 5, at most 1,000,000.
	FailureThreshold int
	// FailureRateThreshold is the share of failed calls, in (0, 1], over the
	// Window that opens the breaker in ModeFailureRate. Default 0.5.
	FailureRateThreshold float64
	// Window is the rolling time window of ModeFailureRate, kept as 10
	// buckets. Default 60s, at least 10ms.
	Window time.Duration
	// MinimumCalls is the number of outcomes in the Window below which the
	// failure rate cannot open the breaker. Default 20.
	MinimumCalls int
	// RecoveryTimeout is how long the breaker stays OPEN before a probe may
	// go. Default 30s, at least 1ms.
	RecoveryTimeout time.Duration
	// HalfOpenMaxCalls is the number of probes in flight at once, fleet-wide,
	// in HALF_OPEN. Default 1.
	HalfOpenMaxCalls int
	// SuccessThreshold is the number of successful probes that closes a
	// HALF_OPEN breaker. Default 1.
	SuccessThreshold int
	// ProbeTimeout is the lease of one probe: a probe neither reported nor
	// released within it is reclaimed. Default 10s, at least 1ms.
	ProbeTimeout time.Duration
}

// defaults holds every default; its Mode is the zero Mode.
var defaults = Settings{
	FailureThreshold:     DefaultFailureThreshold,
	FailureRateThreshold: DefaultFailureRateThreshold,
	Window:               DefaultWindow,
	MinimumCalls:         DefaultMinimumCalls,
	RecoveryTimeout:      DefaultRecoveryTimeout,
	HalfOpenMaxCalls:     DefaultHalfOpenMaxCalls,
	SuccessThreshold:     DefaultSuccessThreshold,
	ProbeTimeout:         DefaultProbeTimeout,
}

// WithDefaults returns s with every zero field set to its default.
func (s Settings) WithDefaults() Settings { return s.Inherit(defaults) }

// Inherit returns s with every zero field but Mode (whose zero value is a
// mode, ModeConsecutive) taken from parent, as a configured breaker takes the
// fields it leaves out from the "default" entry.
func (s Settings) Inherit(parent Settings) Settings {
	s.FailureThreshold = cmp.Or(s.FailureThreshold, parent.FailureThreshold)
	s.FailureRateThreshold = cmp.Or(s.FailureRateThreshold, parent.FailureRateThreshold)
	s.Window = cmp.Or(s.Window, parent.Window)
	s.MinimumCalls = cmp.Or(s.MinimumCalls, parent.MinimumCalls)
	s.RecoveryTimeout = cmp.Or(s.RecoveryTimeout, parent.RecoveryTimeout)
	s.HalfOpenMaxCalls = cmp.Or(s.HalfOpenMaxCalls, parent.HalfOpenMaxCalls)
	s.SuccessThreshold = cmp.Or(s.SuccessThreshold, parent.SuccessThreshold)
	s.ProbeTimeout = cmp.Or(s.ProbeTimeout, parent.ProbeTimeout)
	return s
}

// NewSettings returns s.WithDefaults() when it is valid, and otherwise the
// error of Validate. It is the one place where a policy is checked and
// completed: the configuration builds every breaker policy with it.
func NewSettings(s Settings) (Settings, error) {
	d := s.WithDefaults()
	if err := d.validateComplete(); err != nil {
		return Settings{}, err
	}
	return d, nil
}

// Validate reports the first invalid field of s.WithDefaults() as an
// *InvalidArgumentError matching ErrInvalidSettings whose message names the
// field in snake_case (mode, failure_threshold, failure_rate_threshold,
// window, minimum_calls, recovery_timeout, half_open_max_calls,
// success_threshold, probe_timeout). Zero fields are valid: they mean the
// default.
func (s Settings) Validate() error {
	_, err := NewSettings(s)
	return err
}

// validateComplete checks s, whose zero fields are already filled.
func (s Settings) validateComplete() error {
	d := s
	if d.Mode != ModeConsecutive && d.Mode != ModeFailureRate {
		return invalid("mode", "must be consecutive (0) or failure_rate (1), got %d", d.Mode)
	}
	for _, c := range []struct {
		name string
		v    int
	}{
		{"failure_threshold", d.FailureThreshold},
		{"minimum_calls", d.MinimumCalls},
		{"half_open_max_calls", d.HalfOpenMaxCalls},
		{"success_threshold", d.SuccessThreshold},
	} {
		if c.v < 1 || c.v > maxCount {
			return invalid(c.name, "must be between 1 and %d, got %d", maxCount, c.v)
		}
	}
	if r := d.FailureRateThreshold; math.IsNaN(r) || r <= 0 || r > 1 {
		return invalid("failure_rate_threshold", "must be in (0, 1], got %v", r)
	}
	for _, c := range []struct {
		name string
		v    time.Duration
		min  time.Duration
	}{
		{"window", d.Window, WindowBuckets * minDuration},
		{"recovery_timeout", d.RecoveryTimeout, minDuration},
		{"probe_timeout", d.ProbeTimeout, minDuration},
	} {
		if c.v < c.min || c.v > maxDuration {
			return invalid(c.name, "must be between %v and %v, got %v", c.min, maxDuration, c.v)
		}
	}
	return nil
}

func invalid(field, format string, args ...any) error {
	return &InvalidArgumentError{Field: field, Reason: fmt.Sprintf(format, args...), err: ErrInvalidSettings}
}

// MaxNameBytes is the longest breaker name accepted: the bound of every name
// and key in the service's API and configuration.
const MaxNameBytes = 256

// ValidateName returns an *InvalidArgumentError (FieldName, matching
// ErrInvalidName) when name is empty or longer than MaxNameBytes. Stores
// call it; callers may call it earlier.
func ValidateName(name string) error {
	if name == "" {
		return invalidArg(FieldName, "must not be empty")
	}
	if len(name) > MaxNameBytes {
		return invalidArg(FieldName, "must be at most %d bytes, got %d", MaxNameBytes, len(name))
	}
	return nil
}

// Prepare validates name and s and returns NewSettings(s). Stores call it at
// the start of every method that takes Settings: whoever calls them, they
// refuse what is invalid, and for Settings from NewSettings it fills nothing.
func Prepare(name string, s Settings) (Settings, error) {
	if err := ValidateName(name); err != nil {
		return Settings{}, err
	}
	return NewSettings(s)
}

// DefaultIdleTTL is how long the stores keep a breaker that nothing has used:
// a breaker left alone for this long (plus KeepFor's margins) is forgotten
// and is CLOSED again, as one never seen; its next use starts a generation
// above the forgotten one.
const DefaultIdleTTL = 24 * time.Hour

// KeepFor is how long a store keeps a breaker with these settings after its
// last use (the Redis store: after its last write): idle plus the recovery
// timeout, the probe timeout and, in failure-rate mode, the window, so that
// an OPEN breaker always outlives its recovery timeout and a probe its lease.
func (s Settings) KeepFor(idle time.Duration) time.Duration {
	d := idle + s.RecoveryTimeout + s.ProbeTimeout
	if s.Mode == ModeFailureRate {
		d += s.Window
	}
	return d
}
