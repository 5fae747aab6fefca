package breaker

import "errors"

// Sentinel errors. Stores and Breaker wrap them with %w: compare with errors.Is.
var (
	// ErrInvalidSettings: a Settings field is out of range. The message names
	// the field in snake_case (for example "failure_threshold").
	ErrInvalidSettings = errors.New("breaker: invalid settings")
	// ErrInvalidName: the breaker name is empty or too long.
	ErrInvalidName = errors.New("breaker: invalid name")
	// ErrInvalidOutcome: the outcome is neither OutcomeSuccess nor OutcomeFailure.
	ErrInvalidOutcome = errors.New("breaker: invalid outcome")
	// ErrInvalidState: an unknown state, or a state Reset cannot force (HALF_OPEN).
	ErrInvalidState = errors.New("breaker: invalid state")
	// ErrInvalidArgument: another argument is invalid (page size, page token).
	ErrInvalidArgument = errors.New("breaker: invalid argument")
	// ErrStoreUnavailable: the store could not answer (Redis down, timeout,
	// unexpected reply). It is never read as a decision: no state was
	// decided. Breaker falls back to its local breaker on this error.
	ErrStoreUnavailable = errors.New("breaker: store unavailable")
)
