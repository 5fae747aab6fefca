package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// command describes one command (or group, or the root) for usage and help.
type command struct {
	name  string // "breakers list"; "" for the root
	args  string // what follows the name in the synopsis
	short string // one line, for the lists of commands
	long  string // the help text
}

// synopsis is the usage line.
func (c *command) synopsis() string {
	return strings.Join(strings.Fields("resilctl [global flags] "+c.name+" "+c.args), " ")
}

// usageError is a bad command line: exit status 2, with cmd's usage line.
type usageError struct {
	cmd *command
	msg string
}

func (e *usageError) Error() string {
	if e.cmd.name == "" {
		return e.msg
	}
	return e.cmd.name + ": " + e.msg
}

// group is a command with subcommands (breakers, limits, cache).
type group struct {
	command
	subs []*command
}

var rootCommand = &command{args: "COMMAND [flags] [args]"}

var (
	breakersGroup = &group{
		command: command{name: "breakers", args: "COMMAND [flags] [args]", short: "inspect, watch and reset circuit breakers"},
		subs:    []*command{breakersList, breakersGet, breakersWatch, breakersReset},
	}
	limitsGroup = &group{
		command: command{name: "limits", args: "COMMAND [flags] [args]", short: "check rate limits without consuming them"},
		subs:    []*command{limitsCheck},
	}
	cacheGroup = &group{
		command: command{name: "cache", args: "COMMAND [flags] [args]", short: "read and write the shared cache"},
		subs:    []*command{cacheGet, cacheSet, cacheDel, cacheDeletePattern, cacheStats},
	}
	groups = []*group{breakersGroup, limitsGroup, cacheGroup}
)

// newFlagSet returns a FlagSet that prints nothing by itself: help and
// errors are printed by the callers, help to stdout, errors to stderr.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseArgs parses the flags of cmd, which may come before, between or
// after its positional arguments ("--" ends the flags), and checks that
// there are at least min and at most max (-1: any number) positional
// arguments, named by names for the message. On --help it prints cmd's
// help to w and returns flag.ErrHelp.
func parseArgs(cmd *command, fs *flag.FlagSet, w io.Writer, args []string, min, max int, names string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printHelp(w, cmd, fs)
				return nil, err
			}
			return nil, &usageError{cmd: cmd, msg: err.Error()}
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	switch {
	case len(pos) < min:
		// names lists the positional arguments in order ("KEY and VALUE"):
		// say which ones are missing, not all of them.
		all := strings.Split(names, " and ")
		missing := all
		if len(pos) < len(all) {
			missing = all[len(pos):]
		}
		msg := "missing " + strings.Join(missing, " and ")
		if len(pos) > 0 && len(missing) < len(all) {
			msg += fmt.Sprintf(" (got %s %q)", strings.Join(all[:len(pos)], " and "), pos)
		}
		return nil, &usageError{cmd: cmd, msg: msg}
	case max >= 0 && len(pos) > max:
		return nil, &usageError{cmd: cmd, msg: fmt.Sprintf("unexpected arguments %q", pos[max:])}
	}
	return pos, nil
}

// printHelp prints a command's help: synopsis, text, flags.
func printHelp(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", cmd.synopsis(), strings.TrimSpace(cmd.long))
	if fs != nil && hasFlags(fs) {
		fmt.Fprintf(w, "\nFlags:\n")
		printFlags(w, fs)
	}
	if cmd.name != "" {
		fmt.Fprintf(w, "\nGlobal flags (before the command): see 'resilctl --help'.\n")
	}
}

// printGroupHelp prints a group's help: its commands.
func printGroupHelp(w io.Writer, g *group) {
	fmt.Fprintf(w, "Usage: %s\n\n%s.\n\nCommands:\n", g.synopsis(), capitalize(g.short))
	printCommands(w, g.subs)
	fmt.Fprintf(w, "\nRun 'resilctl %s COMMAND --help' for a command's flags.\n", g.name)
}

// printRootHelp prints the program's help.
func printRootHelp(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: %s\n\nresilctl is the operators' CLI for a running resilienced.\n\nCommands:\n", rootCommand.synopsis())
	var all []*command
	for _, g := range groups {
		all = append(all, g.subs...)
	}
	printCommands(w, append(all, &command{name: "help", args: "[COMMAND...]", short: "help about a command (every command also takes --help)"}))
	fmt.Fprintf(w, "\nGlobal flags:\n")
	printFlags(w, fs)
	fmt.Fprintf(w, "\nOutput: --output table for people; --output json prints the proto3 JSON mapping of the\n"+
		"answer (field names as in the .proto files, every field present, int64 as strings).\n"+
		"Exit status: 0 success, 1 failed RPC (\"resilctl: CODE: message\" on stderr), 2 bad command line.\n")
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// printCommands prints one line per command: synopsis, then what it does
// (the synopsis alone on its line when it is long).
func printCommands(w io.Writer, cmds []*command) {
	for _, c := range cmds {
		syn := c.name + " " + c.args
		if len(syn) > 48 {
			fmt.Fprintf(w, "  %s\n  %-48s %s\n", syn, "", c.short)
			continue
		}
		fmt.Fprintf(w, "  %-48s %s\n", syn, c.short)
	}
}

// printFlags prints fs's flags GNU style (--name), with their defaults.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		head := "--" + f.Name
		if typ != "" {
			head += " " + typ
		}
		def := ""
		switch f.DefValue {
		case "", "false", "0", "0s":
		default:
			def = fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(tw, "  %s\t%s%s\n", head, usage, def)
	})
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// dispatch picks the subcommand of g named by args[0]. It prints g's help
// and returns flag.ErrHelp for -h, --help and help.
func dispatch(g *group, w io.Writer, args []string) (string, []string, error) {
	if len(args) == 0 {
		return "", nil, &usageError{cmd: &g.command, msg: "missing command (" + subNames(g) + ")"}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		printGroupHelp(w, g)
		return "", nil, flag.ErrHelp
	}
	for _, c := range g.subs {
		if c.name == g.name+" "+args[0] {
			return args[0], args[1:], nil
		}
	}
	return "", nil, &usageError{cmd: &g.command, msg: fmt.Sprintf("unknown command %q (want %s)", args[0], subNames(g))}
}

// subcommands maps the name of each subcommand of a group ("list" for
// "breakers list") to what runs it.
type subcommands map[string]func(ctx context.Context, args []string) error

// runGroup runs the subcommand of g named by args[0] (see dispatch), one of
// subs, with the rest of args.
func runGroup(ctx context.Context, g *group, w io.Writer, args []string, subs subcommands) error {
	sub, rest, err := dispatch(g, w, args)
	if err != nil {
		return err
	}
	return subs[sub](ctx, rest)
}

func subNames(g *group) string {
	var names []string
	for _, c := range g.subs {
		names = append(names, strings.TrimPrefix(c.name, g.name+" "))
	}
	return strings.Join(names, ", ")
}
