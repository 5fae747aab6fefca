package breaker

import (
	"errors"
	"fmt"
)

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
	// ErrInvalidArgument: another argument is invalid (page size, page token,
	// permit id). Every such error is an *InvalidArgumentError.
	ErrInvalidArgument = errors.New("breaker: invalid argument")
	// ErrStoreUnavailable: the store could not answer (Redis down, timeout,
	// unexpected reply). It is never read as a decision: no state was
	// decided. Breaker falls back to its local breaker on this error.
	ErrStoreUnavailable = errors.New("breaker: store unavailable")
)

// The fields named by InvalidArgumentError.Field.
const (
	FieldName      = "name"       // the breaker name (matches ErrInvalidName)
	FieldPageSize  = "page_size"  // List's page size
	FieldPageToken = "page_token" // List's page token
	FieldPermitID  = "permit_id"  // Report's or Release's permit
)

// InvalidArgumentError reports an invalid argument of a call, other than
// Settings (see SettingsError). Field is the snake_case name of the argument
// as in the API (one of the Field... constants); Reason says what is wrong
// and what is allowed, without the field's name, so that a server can print
// "<field>: <reason>":
//
//	page_token: malformed, pass the next_page_token of the previous page
//
// It matches ErrInvalidName with errors.Is when Field is FieldName, and
// ErrInvalidArgument otherwise.
type InvalidArgumentError struct {
	Field  string
	Reason string
}

// Error returns "<sentinel>: <field>: <reason>", for example
// "breaker: invalid argument: page_token: malformed, pass ...".
func (e *InvalidArgumentError) Error() string {
	return e.sentinel().Error() + ": " + e.Field + ": " + e.Reason
}

// Is reports whether target is the sentinel of e's field (ErrInvalidName
// for FieldName, ErrInvalidArgument for the others).
func (e *InvalidArgumentError) Is(target error) bool { return target == e.sentinel() }

func (e *InvalidArgumentError) sentinel() error {
	if e.Field == FieldName {
		return ErrInvalidName
	}
	return ErrInvalidArgument
}

func invalidArg(field, format string, args ...any) error {
	return &InvalidArgumentError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
