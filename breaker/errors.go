package breaker

import (
	"errors"
	"fmt"
)

// Sentinel errors. Stores and Breaker wrap them with %w: compare with errors.Is.
var (
	// ErrInvalidSettings: a Settings field is out of range. Every such error
	// is an *InvalidArgumentError naming the field in snake_case (for example
	// "failure_threshold").
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
	FieldOutcome   = "outcome"    // Report's outcome (matches ErrInvalidOutcome)
	FieldState     = "state"      // Reset's target state, or a state name (matches ErrInvalidState)
)

// InvalidArgumentError is the package's one invalid-argument error: a field
// of Settings or another argument of a call. Field is the snake_case name of
// the field as in configuration files and the API (a Settings field, or one
// of the Field... constants); Reason says what is wrong and what is allowed,
// without the field's name, so that a server can print "<field>: <reason>":
//
//	page_token: malformed, pass the next_page_token of the previous page
//
// It matches, with errors.Is, ErrInvalidSettings for a field of Settings,
// ErrInvalidName for FieldName, and ErrInvalidArgument otherwise. A server
// tells a bad policy in its own configuration (ErrInvalidSettings) from a
// caller's bad argument with that.
type InvalidArgumentError struct {
	Field  string
	Reason string

	err error // the sentinel when not implied by Field (ErrInvalidSettings, ErrInvalidOutcome, ErrInvalidState)
}

// Error returns "<sentinel>: <field>: <reason>", for example
// "breaker: invalid argument: page_token: malformed, pass ...", or for a
// field of Settings "breaker: invalid settings: <field> <reason>".
func (e *InvalidArgumentError) Error() string {
	if e.err == ErrInvalidSettings {
		return ErrInvalidSettings.Error() + ": " + e.Field + " " + e.Reason
	}
	return e.sentinel().Error() + ": " + e.Field + ": " + e.Reason
}

// Is reports whether target is the sentinel of e's field (ErrInvalidSettings
// for a field of Settings, ErrInvalidName for FieldName, ErrInvalidOutcome for
// FieldOutcome, ErrInvalidState for FieldState, ErrInvalidArgument for the
// others).
func (e *InvalidArgumentError) Is(target error) bool { return target == e.sentinel() }

func (e *InvalidArgumentError) sentinel() error {
	switch {
	case e.err != nil:
		return e.err
	case e.Field == FieldName:
		return ErrInvalidName
	}
	return ErrInvalidArgument
}

func invalidArg(field, format string, args ...any) error {
	return &InvalidArgumentError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// InvalidOutcome returns the error of an outcome that is neither
// OutcomeSuccess nor OutcomeFailure (it matches ErrInvalidOutcome). Stores
// return it from Report.
func InvalidOutcome(o Outcome) error {
	return &InvalidArgumentError{Field: FieldOutcome, Reason: fmt.Sprintf("must be success or failure, got %d", o), err: ErrInvalidOutcome}
}

// checkOutcome is InvalidOutcome(o) for an invalid o, nil otherwise.
func checkOutcome(o Outcome) error {
	if !o.Valid() {
		return InvalidOutcome(o)
	}
	return nil
}

// InvalidResetState returns the error of a Reset to a state other than
// CLOSED or OPEN (it matches ErrInvalidState). Stores return it from Reset.
func InvalidResetState(to State) error {
	return &InvalidArgumentError{Field: FieldState, Reason: fmt.Sprintf("reset to %s: only CLOSED or OPEN", to), err: ErrInvalidState}
}

// checkResetState is InvalidResetState(to) unless to is CLOSED or OPEN, nil
// otherwise.
func checkResetState(to State) error {
	if to != StateClosed && to != StateOpen {
		return InvalidResetState(to)
	}
	return nil
}
