package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"google.golang.org/protobuf/types/known/durationpb"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

var limitsCheck = &command{
	name: "limits check", args: "KEY (--policy NAME | --max-calls N --window D [--burst N] | --max-in-flight N --in-flight-lease D) [--cost N] [--and KEY=POLICY]...",
	short: "would a call be admitted now? (consumes nothing)",
	long: `Asks whether a call of --cost tokens on KEY would be admitted now, under
the configured limit --policy or the inline limit --max-calls per --window
(capacity --burst, default max-calls) and/or --max-in-flight calls in flight
(slots held --in-flight-lease at most). Each --and KEY=POLICY adds a limit
to the same all-or-nothing decision (at most 8 in all, keys distinct). It is
a dry run (AcquireRequest.dry_run): no token or slot is taken. A denial is
an answer (exit 0): see allowed, reason, retry after, limited by, and each
limit's own answer (remaining tokens, slots in flight). JSON: AcquireResponse.`,
}

// LimitsCommand runs "resilctl limits ...". Not safe for concurrent use.
type LimitsCommand struct {
	g *globals
}

// Run runs the subcommand named by args[0] with the rest of args.
func (c *LimitsCommand) Run(ctx context.Context, args []string) error {
	return runGroup(ctx, limitsGroup, c.g.stdout, args, subcommands{"check": c.check})
}

// parseCheck parses "limits check" into its request (dry_run set).
func parseCheck(w io.Writer, args []string) (*resiliencev1.AcquireRequest, error) {
	fs := newFlagSet("check")
	policy := fs.String("policy", "", "the `NAME` of a limit in the server configuration")
	maxCalls := fs.Int64("max-calls", 0, "inline limit: calls per --window")
	window := fs.Duration("window", 0, "inline limit: the window over which max-calls refill")
	burst := fs.Int64("burst", 0, "inline limit: bucket capacity (0: max-calls)")
	cost := fs.Int64("cost", 0, "tokens the call would take (0: 1)")
	maxInFlight := fs.Int64("max-in-flight", 0, "inline concurrency limit: calls in flight at most")
	lease := fs.Duration("in-flight-lease", 0, "inline concurrency limit: the lease of one slot")
	var also andFlag
	fs.Var(&also, "and", "another limit of the same decision, `KEY=POLICY` (repeatable)")
	pos, err := parseArgs(limitsCheck, fs, w, args, 1, 1, "KEY")
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	req := &resiliencev1.AcquireRequest{Key: pos[0], Cost: *cost, DryRun: true}
	rateSet := set["max-calls"] || set["window"] || set["burst"]
	slotsSet := set["max-in-flight"] || set["in-flight-lease"]
	inline := rateSet || slotsSet
	switch {
	case set["policy"] && inline:
		return nil, &usageError{cmd: limitsCheck, msg: "--policy and --max-calls/--window/--burst/--max-in-flight/--in-flight-lease exclude each other"}
	case set["policy"]:
		req.Policy = *policy
	case !inline:
		return nil, &usageError{cmd: limitsCheck, msg: "missing --policy NAME or --max-calls N --window D"}
	case rateSet && !set["max-calls"]:
		return nil, &usageError{cmd: limitsCheck, msg: "missing --max-calls N (the inline limit needs --max-calls and --window)"}
	case rateSet && !set["window"]:
		return nil, &usageError{cmd: limitsCheck, msg: "missing --window D (the inline limit needs --max-calls and --window)"}
	case slotsSet && !(set["max-in-flight"] && set["in-flight-lease"]):
		return nil, &usageError{cmd: limitsCheck, msg: "the inline concurrency limit needs --max-in-flight N and --in-flight-lease D"}
	default:
		req.Limit = &resiliencev1.RateLimit{MaxCalls: *maxCalls, Burst: *burst, MaxInFlight: *maxInFlight}
		if rateSet {
			req.Limit.TimeWindow = durationpb.New(*window)
		}
		if slotsSet {
			req.Limit.InFlightLease = durationpb.New(*lease)
		}
	}
	for _, a := range also {
		req.Limits = append(req.Limits, &resiliencev1.LimitRequest{Key: a.key, Policy: a.policy, Cost: *cost})
	}
	return req, nil
}

// andFlag collects --and KEY=POLICY.
type andFlag []struct{ key, policy string }

func (f *andFlag) String() string { return fmt.Sprint(len(*f), " limits") }

func (f *andFlag) Set(v string) error {
	k, p, ok := strings.Cut(v, "=")
	if !ok || k == "" || p == "" {
		return fmt.Errorf("want KEY=POLICY, got %q", v)
	}
	*f = append(*f, struct{ key, policy string }{k, p})
	return nil
}

func (c *LimitsCommand) check(ctx context.Context, args []string) error {
	req, err := parseCheck(c.g.stdout, args)
	if err != nil {
		return err
	}
	resp, err := call(ctx, c.g, c.g.resilience, func(ctx context.Context, rs resiliencev1.ResilienceServiceClient) (*resiliencev1.AcquireResponse, error) {
		return rs.Acquire(ctx, req)
	})
	if err != nil {
		return err
	}
	return c.g.printAnswer(resp, resp.GetDegraded(), acquireRows(req.GetKey(), resp))
}
