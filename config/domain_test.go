package config

import (
	"testing"
	"time"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/limiter"
)

// TestDomainTypes checks that a loaded configuration holds the domain's own
// validated values: the Limit of limiter.NewLimit and the Settings of
// breaker.NewSettings, inherited from the "default" entry.
func TestDomainTypes(t *testing.T) {
	c, err := Parse("t.yaml", []byte(`
limits:
  a: {max_calls: 10, time_window: 1s}
  b: {max_calls: 7, time_window: 1m, burst: 3}
breakers:
  default: {failure_threshold: 9, recovery_timeout: 5s}
  fr: {mode: failure_rate, minimum_calls: 4}
`))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][3]int64{"a": {10, int64(time.Second), 0}, "b": {7, int64(time.Minute), 3}} {
		lim, err := limiter.NewLimit(want[0], time.Duration(want[1]), want[2])
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Limits[name].Limiter(); got != lim {
			t.Errorf("limit %s: got %+v, want limiter.NewLimit's %+v", name, got, lim)
		}
	}
	def, err := breaker.NewSettings(breaker.Settings{FailureThreshold: 9, RecoveryTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Breakers["default"].Settings(); got != def {
		t.Errorf("default breaker: got %+v, want %+v", got, def)
	}
	fr := breaker.Settings{Mode: breaker.ModeFailureRate, MinimumCalls: 4}.Inherit(def)
	if got := c.Breakers["fr"].Settings(); got != fr {
		t.Errorf("fr breaker: got %+v, want %+v", got, fr)
	}
	if b, _ := c.BreakerPolicy("other"); b.Settings() != def {
		t.Errorf("unlisted breaker: got %+v, want the default entry's %+v", b.Settings(), def)
	}
	// A field changed after loading is read as it is now, not as loaded.
	b := c.Breakers["fr"]
	b.MinimumCalls = 8
	if got := b.Settings().MinimumCalls; got != 8 {
		t.Errorf("after changing minimum_calls: Settings().MinimumCalls = %d, want 8", got)
	}
	l := c.Limits["a"]
	l.Burst = 4
	if got := l.Limiter().Burst; got != 4 {
		t.Errorf("after changing burst: Limiter().Burst = %d, want 4", got)
	}
}
