package cliflag_test

import (
	"errors"
	"flag"
	"io"
	"testing"

	"github.com/topdeck/resilience/internal/cliflag"
)

// TestParse checks each kind of command line: help is flag.ErrHelp itself,
// every other mistake an ErrUsage saying what was wrong.
func TestParse(t *testing.T) {
	parse := func(args ...string) (int, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		n := fs.Int("n", 0, "a number")
		return *n, cliflag.Parse(fs, args)
	}
	if n, err := parse("-n", "3"); n != 3 || err != nil {
		t.Errorf("-n 3: %d, %v; want 3, nil", n, err)
	}
	if n, err := parse(); n != 0 || err != nil {
		t.Errorf("no arguments: %d, %v; want 0, nil", n, err)
	}
	for _, h := range []string{"-h", "--help"} {
		if _, err := parse(h); err != flag.ErrHelp {
			t.Errorf("%s: %v, want flag.ErrHelp itself", h, err)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-n", "x"}, `usage error: invalid value "x" for flag -n: parse error`},
		{[]string{"--nope"}, "usage error: flag provided but not defined: -nope"},
		{[]string{"-n", "1", "extra"}, `usage error: unexpected arguments ["extra"]`},
		{[]string{"extra", "-n", "1"}, `usage error: unexpected arguments ["extra" "-n" "1"]`},
	} {
		_, err := parse(tc.args...)
		if !errors.Is(err, cliflag.ErrUsage) || err.Error() != tc.want {
			t.Errorf("%q: %v, want an ErrUsage saying %q", tc.args, err, tc.want)
		}
	}
}
