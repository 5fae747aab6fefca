package main

import (
	"errors"
	"io"
	"testing"
	"time"
)

func TestParseFlagsEnvAndPrecedence(t *testing.T) {
	m := NewMain(io.Discard, io.Discard)
	env := map[string]string{
		"RESILIENCE_LISTEN":     "127.0.0.1:6000",
		"RESILIENCE_REDIS_URL":  "redis://127.0.0.1:6390",
		"RESILIENCE_LOG_FORMAT": "text",
	}
	f, err := m.ParseFlags([]string{"--listen", "127.0.0.1:7000"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if f.Listen != "127.0.0.1:7000" {
		t.Errorf("listen: got %q, want the flag's 127.0.0.1:7000 over the env", f.Listen)
	}
	if f.RedisURL != "redis://127.0.0.1:6390" || f.LogFormat != "text" {
		t.Errorf("got redis %q format %q, want the env values", f.RedisURL, f.LogFormat)
	}
	if f.LogLevel != "info" || f.ShutdownTimeout != 10*time.Second {
		t.Errorf("defaults: got level %q timeout %s", f.LogLevel, f.ShutdownTimeout)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	m := NewMain(io.Discard, io.Discard)
	none := func(string) string { return "" }
	for _, args := range [][]string{{"--nope"}, {"extra"}, {"--shutdown-timeout", "0s"}} {
		if _, err := m.ParseFlags(args, none); !errors.Is(err, errUsage) {
			t.Errorf("ParseFlags(%q): got %v, want a usage error", args, err)
		}
	}
	bad := func(k string) string {
		if k == "RESILIENCE_SHUTDOWN_TIMEOUT" {
			return "soon"
		}
		return ""
	}
	if _, err := m.ParseFlags(nil, bad); !errors.Is(err, errUsage) {
		t.Errorf("bad env: got %v, want a usage error naming the variable", err)
	}
	if _, err := newLogger(io.Discard, "loud", "json"); !errors.Is(err, errUsage) {
		t.Errorf("bad level: got %v, want a usage error", err)
	}
}
