package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

var (
	breakersList = &command{
		name: "breakers list", args: "[--prefix P] [--page-size N]",
		short: "list breakers (every page)",
		long: `Lists the breakers the fleet has seen, ordered by name, paging through
ListBreakers until the last page. Table: one row per breaker. JSON:
{"breakers": [BreakerStatus, ...]}.`,
	}
	breakersGet = &command{
		name: "breakers get", args: "NAME",
		short: "one breaker's status and policy",
		long: `Prints one breaker's state, counters and the policy in force. A breaker
that has never been used is CLOSED. JSON: BreakerStatus.`,
	}
	breakersWatch = &command{
		name: "breakers watch", args: "[--prefix P]",
		short: "stream state transitions until Ctrl-C",
		long: `Streams every state transition made by any replica, for breakers whose
name starts with --prefix, until interrupted (Ctrl-C, SIGTERM: exit 0) or
until the server ends the stream (exit 0; an error status: exit 1). Once
the watch is in place, "resilctl: watching breakers ..." is printed on
stderr. Table: one line per event. JSON: one BreakerEvent per line.
--timeout does not apply.`,
	}
	breakersReset = &command{
		name: "breakers reset", args: "NAME [--open]",
		short: "force a breaker CLOSED (or OPEN), fleet-wide",
		long: `Forces a breaker CLOSED (the default) or, with --open, OPEN, on every
replica, and prints its status after the reset. JSON: BreakerStatus.`,
	}
)

// BreakersCommand runs "resilctl breakers ...". Not safe for concurrent use.
type BreakersCommand struct {
	g *globals
}

// Run runs the subcommand named by args[0] with the rest of args.
func (c *BreakersCommand) Run(ctx context.Context, args []string) error {
	return runGroup(ctx, breakersGroup, c.g.stdout, args, subcommands{"list": c.list, "get": c.get, "watch": c.watch, "reset": c.reset})
}

func (c *BreakersCommand) list(ctx context.Context, args []string) error {
	fs := newFlagSet("list")
	prefix := fs.String("prefix", "", "only breakers whose name starts with `P`")
	pageSize := fs.Int("page-size", 0, "breakers per ListBreakers call (0: the server's default, 100; at most 1000)")
	if _, err := parseArgs(breakersList, fs, c.g.stdout, args, 0, 0, ""); err != nil {
		return err
	}
	rs, err := c.g.resilience()
	if err != nil {
		return err
	}
	var all []*resiliencev1.BreakerStatus
	token := ""
	for {
		rctx, cancel := c.g.rpcContext(ctx)
		resp, err := rs.ListBreakers(rctx, &resiliencev1.ListBreakersRequest{Prefix: *prefix, PageSize: int32(*pageSize), PageToken: token})
		cancel()
		if err != nil {
			return err
		}
		all = append(all, resp.GetBreakers()...)
		next := resp.GetNextPageToken()
		if next == "" {
			break
		}
		if next == token {
			return fmt.Errorf("ListBreakers returned the same page token %q twice", next)
		}
		token = next
	}
	if c.g.json() {
		return writeJSONBreakers(c.g.stdout, all)
	}
	if len(all) == 0 {
		fmt.Fprintln(c.g.stderr, "resilctl: no breakers found")
		return nil
	}
	return writeBreakerTable(c.g.stdout, all)
}

func (c *BreakersCommand) get(ctx context.Context, args []string) error {
	fs := newFlagSet("get")
	pos, err := parseArgs(breakersGet, fs, c.g.stdout, args, 1, 1, "NAME")
	if err != nil {
		return err
	}
	resp, err := call(ctx, c.g, c.g.resilience, func(ctx context.Context, rs resiliencev1.ResilienceServiceClient) (*resiliencev1.BreakerStateResponse, error) {
		return rs.BreakerState(ctx, &resiliencev1.BreakerStateRequest{Breaker: pos[0]})
	})
	if err != nil {
		return err
	}
	return c.printStatus(resp.GetStatus())
}

func (c *BreakersCommand) reset(ctx context.Context, args []string) error {
	fs := newFlagSet("reset")
	open := fs.Bool("open", false, "force it OPEN instead of CLOSED")
	pos, err := parseArgs(breakersReset, fs, c.g.stdout, args, 1, 1, "NAME")
	if err != nil {
		return err
	}
	to := resiliencev1.CircuitState_CIRCUIT_STATE_CLOSED
	if *open {
		to = resiliencev1.CircuitState_CIRCUIT_STATE_OPEN
	}
	resp, err := call(ctx, c.g, c.g.resilience, func(ctx context.Context, rs resiliencev1.ResilienceServiceClient) (*resiliencev1.ResetBreakerResponse, error) {
		return rs.ResetBreaker(ctx, &resiliencev1.ResetBreakerRequest{Breaker: pos[0], State: to})
	})
	if err != nil {
		return err
	}
	return c.printStatus(resp.GetStatus())
}

func (c *BreakersCommand) printStatus(st *resiliencev1.BreakerStatus) error {
	return c.g.printAnswer(st, st.GetDegraded(), breakerRows(st))
}

func (c *BreakersCommand) watch(ctx context.Context, args []string) error {
	fs := newFlagSet("watch")
	prefix := fs.String("prefix", "", "only breakers whose name starts with `P`")
	if _, err := parseArgs(breakersWatch, fs, c.g.stdout, args, 0, 0, ""); err != nil {
		return err
	}
	rs, err := c.g.resilience()
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(c.g.outgoing(ctx))
	defer cancel()
	stream, err := rs.WatchBreakers(sctx, &resiliencev1.WatchBreakersRequest{Prefix: *prefix})
	if err != nil {
		return interrupted(ctx, err)
	}
	// The server sends its headers once the watch is in place; an error
	// status comes without them and is read by Recv below.
	if md, err := stream.Header(); err == nil && md != nil {
		what := "all breakers"
		if *prefix != "" {
			what = fmt.Sprintf("breakers with prefix %q", *prefix)
		}
		fmt.Fprintf(c.g.stderr, "resilctl: watching %s on %s (Ctrl-C to stop)\n", what, c.g.addr)
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return interrupted(ctx, err)
		}
		if c.g.json() {
			err = writeJSONLine(c.g.stdout, resp.GetEvent())
		} else {
			_, err = fmt.Fprintln(c.g.stdout, eventLine(resp.GetEvent()))
		}
		if err != nil {
			return err
		}
	}
}

// interrupted returns nil when ctx (the process's: SIGINT, SIGTERM) is done,
// err otherwise: an interrupted watch has succeeded.
func interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}
