package cliflag_test

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/topdeck/resilience/internal/cliflag"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    error  // nil, flag.ErrHelp or cliflag.ErrUsage
		message string // in the error, when want is ErrUsage
		n       int    // -n after a successful parse
	}{
		{args: nil},
		{args: []string{"-n", "3"}, n: 3},
		{args: []string{"-h"}, want: flag.ErrHelp},
		{args: []string{"--help"}, want: flag.ErrHelp},
		{args: []string{"-n", "x"}, want: cliflag.ErrUsage, message: `invalid value "x" for flag -n`},
		{args: []string{"--nope"}, want: cliflag.ErrUsage, message: "flag provided but not defined: -nope"},
		{args: []string{"-n", "1", "extra", "more"}, want: cliflag.ErrUsage, message: `unexpected arguments ["extra" "more"]`},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		n := fs.Int("n", 0, "a number")
		err := cliflag.Parse(fs, tc.args)
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%q: %v, want nil", tc.args, err)
		case tc.want == nil && *n != tc.n:
			t.Errorf("%q: -n = %d, want %d", tc.args, *n, tc.n)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%q: %v, want %v", tc.args, err, tc.want)
		case tc.want == flag.ErrHelp && err != flag.ErrHelp:
			t.Errorf("%q: %v, want flag.ErrHelp itself", tc.args, err)
		case tc.message != "" && !strings.Contains(err.Error(), tc.message):
			t.Errorf("%q: %q, want it to say %q", tc.args, err, tc.message)
		}
	}
}
