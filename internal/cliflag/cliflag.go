// Package cliflag parses the command lines of this module's daemons and
// tools one way: asking for help is flag.ErrHelp as itself, and every other
// mistake, and any argument left after the flags, is an error wrapping
// ErrUsage (exit status 2 by convention).
package cliflag

import (
	"errors"
	"flag"
	"fmt"
)

// ErrUsage marks errors in a command line.
var ErrUsage = errors.New("usage error")

// Parse parses args with fs, which takes no positional arguments.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", ErrUsage, fs.Args())
	}
	return nil
}
