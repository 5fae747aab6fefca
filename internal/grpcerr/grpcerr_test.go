package grpcerr_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/cache"
	"github.com/topdeck/resilience/internal/grpcerr"
	"github.com/topdeck/resilience/limiter"
)

func TestStatus(t *testing.T) {
	live := context.Background()
	ended, cancel := context.WithCancel(live)
	cancel()
	limitErr := limiter.Limit{MaxCalls: 1, Window: time.Second, Burst: -1}.Validate()
	tests := []struct {
		name  string
		ctx   context.Context
		err   error
		opts  []grpcerr.Option
		code  codes.Code
		field string // BadRequest field of INVALID_ARGUMENT
	}{
		{"nil", live, nil, nil, codes.OK, ""},
		{"status kept", live, status.Error(codes.NotFound, "x"), nil, codes.NotFound, ""},
		{"caller left", ended, fmt.Errorf("%w: x", limiter.ErrStoreUnavailable), nil, codes.Canceled, ""},
		{"limiter argument", live, limitErr, nil, codes.InvalidArgument, "limit.burst"},
		{"limiter argument, configured limits", live, limitErr, []grpcerr.Option{grpcerr.LimitsConfigured()}, codes.Internal, ""},
		{"cache argument", live, &cache.ArgumentError{Field: "key", Reason: "key is empty"}, nil, codes.InvalidArgument, "key"},
		{"breaker name", live, breaker.ValidateName(""), nil, codes.InvalidArgument, "breaker"},
		{"breaker page token", live, &breaker.InvalidArgumentError{Field: breaker.FieldPageToken, Reason: "malformed"}, nil, codes.InvalidArgument, "page_token"},
		{"breaker settings", live, breaker.Settings{FailureThreshold: -1}.Validate(), nil, codes.FailedPrecondition, ""},
		{"breaker store", live, fmt.Errorf("%w: x", breaker.ErrStoreUnavailable), nil, codes.Unavailable, ""},
		{"limiter store", live, fmt.Errorf("%w: x", limiter.ErrStoreUnavailable), nil, codes.Unavailable, ""},
		{"cache store", live, fmt.Errorf("%w: x", cache.ErrStoreUnavailable), nil, codes.Unavailable, ""},
		{"own store timeout", live, fmt.Errorf("x: %w", context.DeadlineExceeded), nil, codes.Unavailable, ""},
		{"other", live, errors.New("x"), nil, codes.Internal, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := grpcerr.Status(tt.ctx, tt.err, tt.opts...)
			st := status.Convert(err)
			if st.Code() != tt.code {
				t.Fatalf("got %v, want %v", err, tt.code)
			}
			if tt.field == "" {
				return
			}
			var got string
			for _, d := range st.Details() {
				if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) == 1 {
					got = br.GetFieldViolations()[0].GetField()
				}
			}
			if got != tt.field {
				t.Errorf("BadRequest field: got %q, want %q (status %v)", got, tt.field, err)
			}
		})
	}
}
