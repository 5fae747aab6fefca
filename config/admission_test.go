package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/topdeck/resilience/config"
)

func TestShadowAndConcurrencyFields(t *testing.T) {
	cfg, err := config.Parse("test.yaml", []byte(`
limits:
  new-limit:
    max_calls: 10
    time_window: 1s
    shadow: true
  ado-in-flight:
    max_in_flight: 20
    in_flight_lease: 30s
  both:
    max_calls: 100
    time_window: 1m
    max_in_flight: 5
    in_flight_lease: 10s
breakers:
  trial:
    failure_threshold: 3
    shadow: true
`))
	if err != nil {
		t.Fatal(err)
	}
	if l := cfg.Limits["new-limit"]; !l.Shadow || !l.HasRate() || l.Slots().Enabled() {
		t.Errorf("new-limit = %+v, want a shadow rate limit", l)
	}
	if l := cfg.Limits["ado-in-flight"]; l.HasRate() || l.Slots().MaxInFlight != 20 || l.Slots().Lease != 30*time.Second {
		t.Errorf("ado-in-flight = %+v, want a concurrency limit alone", l)
	}
	if l := cfg.Limits["both"]; !l.HasRate() || l.Slots().MaxInFlight != 5 {
		t.Errorf("both = %+v, want rate and concurrency", l)
	}
	b, _ := cfg.BreakerPolicy("trial")
	if !b.Shadow || b.Settings().FailureThreshold != 3 {
		t.Errorf("trial = %+v, want a shadow breaker with threshold 3", b)
	}
	if d, _ := cfg.BreakerPolicy("other"); d.Shadow {
		t.Error("default breaker is shadow")
	}
}

func TestConcurrencyFieldErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"limits:\n  x:\n    max_in_flight: 3\n", "in_flight_lease"},
		{"limits:\n  x:\n    max_in_flight: 3\n    in_flight_lease: 0s\n", "in_flight_lease"},
		{"limits:\n  x:\n    in_flight_lease: 1s\n", "max_in_flight"},
		{"limits:\n  x:\n    max_in_flight: 3\n    in_flight_lease: 1500us\n", "in_flight_lease"},
		{"limits:\n  x:\n    max_in_flight: 3\n    in_flight_lease: 1s\n    lease:\n      max_tokens: 2\n      ttl: 1s\n", "lease"},
	} {
		_, err := config.Parse("test.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error naming %s", tc.yaml, err, tc.want)
		}
	}
}
