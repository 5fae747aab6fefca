package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/cache"
	"github.com/topdeck/resilience/limiter"
)

// TestToStatusStoreTimeoutIsUnavailable reproduces the hung-Redis report: a
// store call that ran out of the service's own store timeout was answered
// DEADLINE_EXCEEDED although the caller's deadline was seconds away.
func TestToStatusStoreTimeoutIsUnavailable(t *testing.T) {
	live := context.Background()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	storeTimeout := fmt.Errorf("redis: i/o: %w", context.DeadlineExceeded)
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want codes.Code
	}{
		{"limiter deny, store timed out", live, fmt.Errorf("%w: %w", limiter.ErrStoreUnavailable, storeTimeout), codes.Unavailable},
		{"bare store timeout", live, storeTimeout, codes.Unavailable},
		{"breaker store timed out", live, fmt.Errorf("%w: %w", breaker.ErrStoreUnavailable, storeTimeout), codes.Unavailable},
		{"cache store timed out", live, fmt.Errorf("%w: %w", cache.ErrStoreUnavailable, storeTimeout), codes.Unavailable},
		{"caller cancelled", ended, fmt.Errorf("%w: %w", limiter.ErrStoreUnavailable, context.Canceled), codes.Canceled},
		{"invalid argument", live, &limiter.InvalidArgumentError{Field: "cost", Reason: "must be > 0, got 0"}, codes.InvalidArgument},
		{"other", live, errors.New("boom"), codes.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := status.Code(toStatus(tt.ctx, tt.err)); got != tt.want {
				t.Errorf("toStatus(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
	expired, cancel2 := context.WithTimeout(context.Background(), 0)
	defer cancel2()
	<-expired.Done()
	if got := status.Code(toStatus(expired, storeTimeout)); got != codes.DeadlineExceeded {
		t.Errorf("with the caller's deadline past: got %v, want DeadlineExceeded", got)
	}
}
