package config

import (
	"testing"
	"time"

	"github.com/topdeck/resilience/limiter"
)

func TestParseLease(t *testing.T) {
	c, err := Parse("ok.yaml", []byte("limits:\n  hot:\n    max_calls: 100000\n    time_window: 1s\n    lease:\n      max_tokens: 500\n      ttl: 50ms\n  cold:\n    max_calls: 10\n    time_window: 1s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Limits["hot"].LeasePolicy(), (limiter.LeasePolicy{MaxTokens: 500, TTL: 50 * time.Millisecond}); got != want {
		t.Errorf("hot: LeasePolicy() = %+v, want %+v", got, want)
	}
	if got := c.Limits["cold"].LeasePolicy(); got.Enabled() {
		t.Errorf("cold: LeasePolicy() = %+v, want lease mode off", got)
	}
}

func TestParseLeaseErrors(t *testing.T) {
	const head = "limits:\n  a:\n    max_calls: 100\n    time_window: 1s\n    lease:\n"
	tests := []parseErrorCase{
		{"ttl without max_tokens", head + "      ttl: 10ms\n", []string{"bad.yaml:5", "limits.a.lease.max_tokens", "required"}},
		{"max_tokens without ttl", head + "      max_tokens: 10\n", []string{"bad.yaml:5", "limits.a.lease.ttl", "positive"}},
		{"ttl too long for the burst", head + "      max_tokens: 10\n      ttl: 1s\n", []string{"bad.yaml:7", "limits.a.lease.ttl", "reserve"}},
		{"max_tokens above the lease capacity", head + "      max_tokens: 91\n      ttl: 100ms\n", []string{"bad.yaml:6", "limits.a.lease.max_tokens", "at most 90"}},
		{"negative max_tokens", head + "      max_tokens: -1\n      ttl: 100ms\n", []string{"bad.yaml:6", "limits.a.lease.max_tokens"}},
		{"unknown lease field", head + "      size: 10\n", []string{"bad.yaml:6", "size: unknown field"}},
	}
	runParseErrors(t, tests)
}
