package main

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/topdeck/resilience/config"
)

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:50051": true, "localhost:1": true, "[::1]:1": true, "127.0.0.2:1": true,
		":50051": false, "0.0.0.0:1": false, "[::]:1": false, "10.0.0.1:1": false, "example.com:1": false, "nonsense": false,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q): got %v, want %v", addr, got, want)
		}
	}
}

func TestCheckExposure(t *testing.T) {
	m := NewMain(io.Discard, io.Discard)
	withAuth, err := config.Parse("a.yaml", []byte("auth:\n  principals:\n    - {name: p, tenant: a, roles: [caller], tls_identity: x}\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		cfg  *config.Config
		want string // "" for no error
	}{
		{"defaults are loopback", nil, config.Default(), ""},
		{"open on every interface", []string{"--listen", ":50051"}, config.Default(), "--listen :50051"},
		{"open metrics on every interface", []string{"--metrics-listen", "0.0.0.0:9090"}, config.Default(), "--metrics-listen"},
		{"--insecure accepts it", []string{"--listen", ":50051", "--metrics-listen", ":9090", "--insecure"}, config.Default(), ""},
		{"auth makes it fine", []string{"--listen", ":50051", "--metrics-listen", ":9090"}, withAuth, ""},
		{"pprof beyond loopback", []string{"--listen", ":50051", "--metrics-listen", ":9090", "--pprof"}, withAuth, "--pprof"},
	}
	for _, tt := range tests {
		f, err := m.ParseFlags(tt.args, func(string) string { return "" })
		if err != nil {
			t.Fatalf("%s: ParseFlags: %v", tt.name, err)
		}
		err = checkExposure(f, tt.cfg)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: got %v, want no error", tt.name, err)
		case tt.want != "" && (!errors.Is(err, errExposed) || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: got %v, want a refusal naming %q", tt.name, err, tt.want)
		case tt.want != "" && tt.want != "--pprof" && !strings.Contains(err.Error(), "auth:"):
			t.Errorf("%s: got %v, want it to say how to configure auth", tt.name, err)
		}
	}
}
