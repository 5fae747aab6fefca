package config

import (
	"strings"
	"testing"
)

// TestDecodeErrorsNameTheField reproduces the misleading messages of the
// reliability report: a bad duration without its field, a misspelt field
// named by its Go type.
func TestDecodeErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string // substrings of the error
		notWant    []string
	}{
		{"bare number as duration", "limits:\n  x:\n    max_calls: 1\n    time_window: 60\n",
			[]string{"t.yaml:4: limits.x.time_window:", `"60" is not a duration`, `"60s"`}, []string{"line 4"}},
		{"misspelt field", "limits:\n  x:\n    max_call: 1\n    time_window: 60s\n",
			[]string{"t.yaml:3: limits.x.max_call: unknown field", "allowed here:", "max_calls", "time_window"}, []string{"config.Limit", "not found in type"}},
		{"string for a number", "limits:\n  x:\n    max_calls: lots\n    time_window: 1s\n",
			[]string{"t.yaml:3: limits.x.max_calls: must be a whole number", `"lots"`}, []string{"int64", "!!str"}},
		{"unknown top-level field", "limitz: {}\n",
			[]string{"t.yaml:1: limitz: unknown field", "limits"}, []string{"config.Config"}},
		{"list for a mapping", "cache: [1]\n",
			[]string{"t.yaml:1: cache: must be a mapping"}, []string{"config.Cache"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse: got nil, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q: want it to contain %q", err, w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q: want it not to contain %q", err, w)
				}
			}
		})
	}
}

// FuzzParse checks that no file makes Parse panic, and that a file it
// accepts gives limits and breaker policies that are valid.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"",
		"limits:\n  x:\n    max_calls: 1\n    time_window: 60\n",
		"limits:\n  a:\n    max_calls: 10\n    time_window: 1s\n    burst: 5\n    on_store_failure: deny\n",
		"breakers:\n  default:\n    mode: failure_rate\n    failure_rate_threshold: 0.5\n    window: 60s\n",
		"cache:\n  default_ttl: 5m\n  max_value_bytes: 1048576\n",
		"cache: [1]\n",
		"redis_key_prefix: \"a{b}\"\n",
		"envoy_ratelimit:\n  - domain: edge\n    descriptors:\n      - key: remote_address\n        rate_limit: {unit: second, requests_per_unit: 10}\n",
		"limits: {x: {max_calls: 9999999999999, time_window: 8760000h}}\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		c, err := Parse("f.yaml", []byte(data))
		if err != nil {
			return
		}
		for name, l := range c.Limits {
			if err := l.Limiter().Validate(); err != nil {
				t.Errorf("accepted limit %q is invalid: %v", name, err)
			}
		}
	})
}
