package breaker

import (
	"fmt"
	"strings"

	"github.com/topdeck/resilience/internal/enum"
)

// State is the state of a breaker. The zero value is StateClosed.
type State uint8

// The states of a breaker. The numeric values are part of the Redis encoding
// and of the event encoding: do not reorder.
const (
	// StateClosed admits every call and counts failures.
	StateClosed State = 0
	// StateOpen admits no call until the recovery timeout has passed.
	StateOpen State = 1
	// StateHalfOpen admits at most HalfOpenMaxCalls leased probes.
	StateHalfOpen State = 2
)

// stateNames are the names of the states, for String and ParseState.
var stateNames = []string{StateClosed: "CLOSED", StateOpen: "OPEN", StateHalfOpen: "HALF_OPEN"}

// String returns "CLOSED", "OPEN" or "HALF_OPEN".
func (s State) String() string { return enum.Name("State", s, stateNames) }

// Valid reports whether s is one of the three states.
func (s State) Valid() bool { return s <= StateHalfOpen }

// ParseState parses "CLOSED", "OPEN" or "HALF_OPEN" (case-insensitive,
// "half-open" accepted). It returns an *InvalidArgumentError (FieldState,
// matching ErrInvalidState) otherwise.
func ParseState(v string) (State, error) {
	name := strings.ToUpper(strings.ReplaceAll(v, "-", "_"))
	for s, n := range stateNames {
		if n == name {
			return State(s), nil
		}
	}
	return 0, &InvalidArgumentError{Field: FieldState, Reason: fmt.Sprintf("must be CLOSED, OPEN or HALF_OPEN, got %q", v), err: ErrInvalidState}
}

// Outcome is the result of a call that the breaker admitted. The zero value is
// invalid, so that a forgotten outcome is an error rather than a success.
type Outcome uint8

const (
	// OutcomeSuccess is a call that the upstream answered well.
	OutcomeSuccess Outcome = 1
	// OutcomeFailure is a call that the upstream failed. A call that the
	// caller never made (denied by a limiter, cancelled before it went) is not
	// a failure: release its permit with Store.Release instead.
	OutcomeFailure Outcome = 2
)

var outcomeNames = []string{OutcomeSuccess: "SUCCESS", OutcomeFailure: "FAILURE"}

// String returns "SUCCESS" or "FAILURE".
func (o Outcome) String() string { return enum.Name("Outcome", o, outcomeNames) }

// Valid reports whether o is OutcomeSuccess or OutcomeFailure.
func (o Outcome) Valid() bool { return o == OutcomeSuccess || o == OutcomeFailure }

// Reasons given in Event.Reason for a transition.
const (
	// ReasonFailureThreshold: FailureThreshold consecutive failures (CLOSED -> OPEN).
	ReasonFailureThreshold = "failure_threshold"
	// ReasonFailureRate: the failure rate over the window reached the threshold (CLOSED -> OPEN).
	ReasonFailureRate = "failure_rate"
	// ReasonRecoveryTimeout: the recovery timeout passed and a probe was asked for (OPEN -> HALF_OPEN).
	ReasonRecoveryTimeout = "recovery_timeout"
	// ReasonProbeSucceeded: SuccessThreshold probes succeeded (HALF_OPEN -> CLOSED).
	ReasonProbeSucceeded = "probe_succeeded"
	// ReasonProbeFailed: a probe failed (HALF_OPEN -> OPEN).
	ReasonProbeFailed = "probe_failed"
	// ReasonReset: an operator forced the state with Store.Reset.
	ReasonReset = "reset"
	// ReasonDataLoss: the store lost the breaker's state (Redis restarted
	// empty, or was flushed), found by StateCache.Resync: the breaker is
	// CLOSED again, or in whatever state the store has now. Generation is
	// the store's (0 when the breaker has no state left).
	ReasonDataLoss = "data_loss"
	// ReasonResync is not a transition: a Watch channel sends an Event with an
	// empty Name and this reason when it may have missed events (the
	// subscription was re-established after a connection loss). Consumers that
	// cache states should drop them.
	ReasonResync = "resync"
)

// Reasons given in ReportResult.IgnoredReason when an outcome did not count.
const (
	// IgnoredStaleGeneration: the outcome's generation is not the current one.
	IgnoredStaleGeneration = "stale_generation"
	// IgnoredNoPermit: in HALF_OPEN, the report carried no live permit (none,
	// unknown, already reported, released or expired).
	IgnoredNoPermit = "no_permit"
	// IgnoredOpen: the breaker is OPEN (possible only with generation 0).
	IgnoredOpen = "open"
)
