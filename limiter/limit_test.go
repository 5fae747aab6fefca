package limiter_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/topdeck/resilience/limiter"
)

func TestNewLimit(t *testing.T) {
	tests := []struct {
		maxCalls  int64
		window    time.Duration
		burst     int64
		wantBurst int64
		wantField string // "" when valid
	}{
		{10, time.Second, 0, 10, ""},
		{10, time.Second, 3, 3, ""},
		{7, time.Second, 100, 100, ""},
		{0, time.Second, 0, 0, "max_calls"},
		{10, 0, 0, 0, "time_window"},
		{10, time.Nanosecond, 0, 0, "time_window"},
		{10, time.Second, -1, 0, "burst"},
		{99991, 24 * time.Hour, 0, 0, "burst"}, // unset burst too deep for the rate
	}
	for _, tt := range tests {
		lit := limiter.Limit{MaxCalls: tt.maxCalls, Window: tt.window, Burst: tt.burst}
		got, err := limiter.NewLimit(tt.maxCalls, tt.window, tt.burst)
		if tt.wantField != "" {
			var ie *limiter.InvalidArgumentError
			if !errors.As(err, &ie) || ie.Field != tt.wantField {
				t.Errorf("NewLimit(%d, %v, %d) error = %v, want an InvalidArgumentError for %s", tt.maxCalls, tt.window, tt.burst, err, tt.wantField)
			}
			if verr := lit.Validate(); verr == nil || verr.Error() != err.Error() {
				t.Errorf("NewLimit(%d, %v, %d) error = %v, want Validate's %v", tt.maxCalls, tt.window, tt.burst, err, verr)
			}
			continue
		}
		if err != nil {
			t.Errorf("NewLimit(%d, %v, %d) = %v, want nil", tt.maxCalls, tt.window, tt.burst, err)
			continue
		}
		if got.MaxCalls != tt.maxCalls || got.Window != tt.window || got.Burst != tt.wantBurst {
			t.Errorf("NewLimit(%d, %v, %d) = %d per %v burst %d, want burst %d", tt.maxCalls, tt.window, tt.burst, got.MaxCalls, got.Window, got.Burst, tt.wantBurst)
		}
		if got.Params() != lit.Params() {
			t.Errorf("NewLimit(%d, %v, %d).Params() = %+v, want the literal's %+v", tt.maxCalls, tt.window, tt.burst, got.Params(), lit.Params())
		}
		if got.Normalized() != lit.Normalized() {
			t.Errorf("NewLimit(%d, %v, %d).Normalized() differs from the literal's", tt.maxCalls, tt.window, tt.burst)
		}
		if got.MaxWait() != lit.MaxWait() {
			t.Errorf("NewLimit(%d, %v, %d).MaxWait() = %v, want %v", tt.maxCalls, tt.window, tt.burst, got.MaxWait(), lit.MaxWait())
		}
	}
}

// TestNewLimitChangedField checks that a Limit from NewLimit whose fields are
// changed afterwards is checked in full again, never trusted.
func TestNewLimitChangedField(t *testing.T) {
	l, err := limiter.NewLimit(10, time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	bad := []func(l *limiter.Limit){
		func(l *limiter.Limit) { l.MaxCalls = 0 },
		func(l *limiter.Limit) { l.Window = time.Nanosecond },
		func(l *limiter.Limit) { l.Burst = -1 },
	}
	for i, change := range bad {
		c := l
		change(&c)
		if err := c.Validate(); !errors.Is(err, limiter.ErrInvalidArgument) {
			t.Errorf("change %d: Validate() = %v, want ErrInvalidArgument", i, err)
		}
	}
	c := l
	c.MaxCalls = 20 // still valid: its own Params, not the cached ones
	want := limiter.Limit{MaxCalls: 20, Window: time.Second, Burst: 10}.Params()
	if c.Params() != want {
		t.Errorf("after MaxCalls = 20: Params() = %+v, want %+v", c.Params(), want)
	}
}

func TestLimitFormat(t *testing.T) {
	l, err := limiter.NewLimit(10, time.Second, 5)
	if err != nil {
		t.Fatal(err)
	}
	lit := limiter.Limit{MaxCalls: 10, Window: time.Second, Burst: 5}
	for _, f := range []string{"%v", "%+v"} {
		if got, want := fmt.Sprintf(f, l), fmt.Sprintf(f, lit); got != want {
			t.Errorf("Sprintf(%q): got %s, want the literal's %s", f, got, want)
		}
	}
	if got, want := fmt.Sprintf("%+v", lit), "{MaxCalls:10 Window:1s Burst:5}"; got != want {
		t.Errorf("Sprintf(%%+v): got %s, want %s", got, want)
	}
}
