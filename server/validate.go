package server

import (
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// MaxKeyBytes bounds every key and name in the API.
const MaxKeyBytes = 256

// invalid returns an INVALID_ARGUMENT status whose message starts with the
// field's name and which carries a BadRequest detail naming it.
func invalid(field, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	st := status.New(codes.InvalidArgument, field+": "+msg)
	if d, err := st.WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: msg}},
	}); err == nil {
		st = d
	}
	return st.Err()
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

// duration converts an optional, non-negative duration. Unset is 0.
func duration(field string, d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, invalid(field, "is not a valid duration: %v", err)
	}
	v := d.AsDuration()
	if v < 0 {
		return 0, invalid(field, "must not be negative, got %s", v)
	}
	return v, nil
}
