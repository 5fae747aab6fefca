package breaker_test

import (
	"errors"
	"testing"
	"time"

	"github.com/topdeck/resilience/breaker"
)

func TestNewSettings(t *testing.T) {
	got, err := breaker.NewSettings(breaker.Settings{FailureThreshold: 3})
	if err != nil {
		t.Fatal(err)
	}
	if want := (breaker.Settings{FailureThreshold: 3}).WithDefaults(); got != want {
		t.Errorf("NewSettings: got %+v, want %+v", got, want)
	}
	again, err := breaker.NewSettings(got)
	if err != nil || again != got {
		t.Errorf("NewSettings of its own result: got %+v, %v; want it unchanged", again, err)
	}
	_, err = breaker.NewSettings(breaker.Settings{ProbeTimeout: -time.Second})
	var ie *breaker.InvalidArgumentError
	if !errors.As(err, &ie) || ie.Field != "probe_timeout" || !errors.Is(err, breaker.ErrInvalidSettings) || errors.Is(err, breaker.ErrInvalidArgument) {
		t.Errorf("NewSettings(probe_timeout -1s): got %v, want an InvalidArgumentError for probe_timeout matching ErrInvalidSettings only", err)
	}
}

func TestInherit(t *testing.T) {
	parent := breaker.Settings{Mode: breaker.ModeFailureRate, FailureThreshold: 9, RecoveryTimeout: time.Minute}.WithDefaults()
	got := breaker.Settings{FailureThreshold: 2}.Inherit(parent)
	want := parent
	want.Mode = breaker.ModeConsecutive // Mode is never inherited: its zero value is a mode
	want.FailureThreshold = 2
	if got != want {
		t.Errorf("Inherit: got %+v, want %+v", got, want)
	}
}
