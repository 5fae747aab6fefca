package breaker_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/topdeck/resilience/breaker"
)

func TestSettingsWithDefaults(t *testing.T) {
	got := breaker.Settings{}.WithDefaults()
	want := breaker.Settings{
		Mode:                 breaker.ModeConsecutive,
		FailureThreshold:     5,
		FailureRateThreshold: 0.5,
		Window:               60 * time.Second,
		MinimumCalls:         20,
		RecoveryTimeout:      30 * time.Second,
		HalfOpenMaxCalls:     1,
		SuccessThreshold:     1,
		ProbeTimeout:         10 * time.Second,
	}
	if got != want {
		t.Fatalf("WithDefaults: got %+v, want %+v", got, want)
	}
	set := breaker.Settings{FailureThreshold: 9, ProbeTimeout: time.Second}.WithDefaults()
	if set.FailureThreshold != 9 || set.ProbeTimeout != time.Second {
		t.Fatalf("WithDefaults changed set fields: got %+v", set)
	}
}

func TestSettingsValidate(t *testing.T) {
	tests := []struct {
		name  string
		s     breaker.Settings
		field string // "" = valid
	}{
		{"zero is valid", breaker.Settings{}, ""},
		{"rate mode", breaker.Settings{Mode: breaker.ModeFailureRate, FailureRateThreshold: 1, Window: 10 * time.Millisecond}, ""},
		{"bad mode", breaker.Settings{Mode: 2}, "mode"},
		{"negative failure threshold", breaker.Settings{FailureThreshold: -1}, "failure_threshold"},
		{"huge failure threshold", breaker.Settings{FailureThreshold: 2_000_000}, "failure_threshold"},
		{"rate above 1", breaker.Settings{FailureRateThreshold: 1.01}, "failure_rate_threshold"},
		{"negative rate", breaker.Settings{FailureRateThreshold: -0.1}, "failure_rate_threshold"},
		{"NaN rate", breaker.Settings{FailureRateThreshold: math.NaN()}, "failure_rate_threshold"},
		{"window too short", breaker.Settings{Window: 9 * time.Millisecond}, "window"},
		{"negative minimum calls", breaker.Settings{MinimumCalls: -1}, "minimum_calls"},
		{"negative recovery", breaker.Settings{RecoveryTimeout: -1}, "recovery_timeout"},
		{"recovery too long", breaker.Settings{RecoveryTimeout: 400 * 24 * time.Hour}, "recovery_timeout"},
		{"negative half-open calls", breaker.Settings{HalfOpenMaxCalls: -1}, "half_open_max_calls"},
		{"negative success threshold", breaker.Settings{SuccessThreshold: -3}, "success_threshold"},
		{"probe timeout below 1ms", breaker.Settings{ProbeTimeout: 999 * time.Microsecond}, "probe_timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate: got %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, breaker.ErrInvalidSettings) || !strings.Contains(err.Error(), tc.field+" ") {
				t.Fatalf("Validate: got %v, want ErrInvalidSettings naming %s", err, tc.field)
			}
		})
	}
}

func TestParseState(t *testing.T) {
	for in, want := range map[string]breaker.State{"CLOSED": breaker.StateClosed, "open": breaker.StateOpen, "half-open": breaker.StateHalfOpen, "HALF_OPEN": breaker.StateHalfOpen} {
		got, err := breaker.ParseState(in)
		if err != nil || got != want {
			t.Fatalf("ParseState(%q): got %v, %v; want %v", in, got, err, want)
		}
		if back, _ := breaker.ParseState(got.String()); back != got {
			t.Fatalf("ParseState(%v.String()): got %v", got, back)
		}
	}
	if _, err := breaker.ParseState("ajar"); !errors.Is(err, breaker.ErrInvalidState) {
		t.Fatalf("ParseState(ajar): got %v, want ErrInvalidState", err)
	}
}

func TestPageToken(t *testing.T) {
	for _, n := range []string{"", "a", "api/x y", "\xff\x00"} {
		got, err := breaker.DecodePageToken(breaker.EncodePageToken(n))
		if err != nil || got != n {
			t.Fatalf("token round trip of %q: got %q, %v", n, got, err)
		}
	}
	for in, want := range map[int]int{0: 100, 1: 1, 1000: 1000, 5000: 1000} {
		if got, err := breaker.NormalizePageSize(in); err != nil || got != want {
			t.Fatalf("NormalizePageSize(%d): got %d, %v; want %d", in, got, err, want)
		}
	}
}
