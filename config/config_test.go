package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseValid(t *testing.T) {
	data := []byte(`
redis_key_prefix: "td:"
limits:
  azure-devops:
    max_calls: 200
    time_window: 60s
  strict:
    max_calls: 10
    time_window: 1s
    burst: 2
    on_store_failure: deny
breakers:
  default:
    failure_threshold: 3
  azure-devops:
    recovery_timeout: 5s
cache:
  default_ttl: 30s
`)
	c, err := Parse("test.yaml", data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got, want := c.RedisKeyPrefix, "td:"; got != want {
		t.Errorf("prefix: got %q, want %q", got, want)
	}
	if got := c.Limits["azure-devops"]; got.Burst != 200 || got.OnStoreFailure != AllowLocal || got.TimeWindow.D() != time.Minute {
		t.Errorf("azure-devops limit: got %+v, want burst 200, allow_local, 1m", got)
	}
	if got := c.Limits["strict"]; got.Burst != 2 || got.OnStoreFailure != Deny {
		t.Errorf("strict limit: got %+v, want burst 2, deny", got)
	}
	b, from := c.BreakerPolicy("azure-devops")
	if from != "azure-devops" || b.FailureThreshold != 3 || b.RecoveryTimeout.D() != 5*time.Second || b.HalfOpenMaxCalls != 1 {
		t.Errorf("azure-devops breaker: got %+v from %q, want threshold 3 (from default), recovery 5s, half-open 1", b, from)
	}
	b, from = c.BreakerPolicy("unknown")
	if from != "default" || b.FailureThreshold != 3 || b.RecoveryTimeout.D() != 30*time.Second {
		t.Errorf("unknown breaker: got %+v from %q, want default policy", b, from)
	}
	if got, want := c.Cache.DefaultTTL.D(), 30*time.Second; got != want {
		t.Errorf("cache default_ttl: got %s, want %s", got, want)
	}
	if got, want := c.Cache.MaxValueBytes, int64(DefaultMaxValueBytes); got != want {
		t.Errorf("cache max_value_bytes: got %d, want %d", got, want)
	}
}

// parseErrorCase is a file Parse refuses, named "bad.yaml", and the
// substrings its error must contain.
type parseErrorCase struct {
	name string
	yaml string
	want []string
}

// runParseErrors runs each case as a subtest: Parse must fail with an error
// containing every wanted substring.
func runParseErrors(t *testing.T, tests []parseErrorCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse: got nil error, want one mentioning %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse error %q: want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestParseErrorsNameFileLineField(t *testing.T) {
	tests := []parseErrorCase{
		{"unknown top-level field", "limitz: {}\n", []string{"bad.yaml:1", "limitz: unknown field", "allowed here: "}},
		{"unknown limit field", "limits:\n  a:\n    max_calls: 1\n    time_window: 1s\n    burts: 3\n", []string{"bad.yaml:5", "limits.a.burts: unknown field", "burst"}},
		{"zero max_calls", "limits:\n  a:\n    max_calls: 0\n    time_window: 1s\n", []string{"bad.yaml:3", "limits.a.max_calls", "at least 1"}},
		{"missing time_window", "limits:\n  a:\n    max_calls: 5\n", []string{"bad.yaml:2", "limits.a.time_window"}},
		{"bad duration", "limits:\n  a:\n    max_calls: 5\n    time_window: soon\n", []string{"bad.yaml:4", "limits.a.time_window", "soon"}},
		{"bad on_store_failure", "limits:\n  a:\n    max_calls: 5\n    time_window: 1s\n    on_store_failure: maybe\n", []string{"bad.yaml:5", "on_store_failure", "maybe"}},
		{"negative threshold", "breakers:\n  x:\n    failure_threshold: -1\n", []string{"bad.yaml:3", "breakers.x.failure_threshold"}},
		{"bad mode", "breakers:\n  x:\n    mode: sometimes\n", []string{"bad.yaml:3", "breakers.x.mode"}},
		{"rate above one", "breakers:\n  x:\n    failure_rate_threshold: 1.5\n", []string{"bad.yaml:3", "failure_rate_threshold"}},
		{"window below a microsecond", "limits:\n  a:\n    max_calls: 5\n    time_window: 1500ns\n", []string{"bad.yaml:4", "limits.a.time_window", "microseconds"}},
		{"negative ttl", "cache:\n  default_ttl: -1s\n", []string{"bad.yaml:2", "cache.default_ttl"}},
		{"hash tag in prefix", "redis_key_prefix: \"a{b}\"\n", []string{"bad.yaml:1", "redis_key_prefix"}},
	}
	runParseErrors(t, tests)
}

func TestLoadAndDefault(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("Load of a missing file: got %v, want an error naming the file", err)
	}
	p := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatalf("Load of an empty file: %v", err)
	}
	d := Default()
	if c.RedisKeyPrefix != d.RedisKeyPrefix || c.Breakers["default"] != d.Breakers["default"] {
		t.Errorf("empty file: got %+v, want the defaults %+v", c, d)
	}
	if got := d.Breakers["default"]; got != DefaultBreaker {
		t.Errorf("default breaker: got %+v, want %+v", got, DefaultBreaker)
	}
}
