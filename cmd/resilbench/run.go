package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/topdeck/resilience/internal/cliflag"
	"io"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

var (
	// errUsage marks a bad command line (exit status 2).
	errUsage = cliflag.ErrUsage
	// errInterrupted reports that ctx was cancelled (Ctrl-C) before the run
	// ended; the results measured so far have been printed (exit status 130).
	errInterrupted = errors.New("interrupted")
	// errAllFailed reports that every measured call failed, or that no call
	// was measured at all (exit status 1).
	errAllFailed = errors.New("every call failed")
)

// Goals of the issue, reported by --compare.
const (
	goalThroughputRatio = 0.60
	goalP99Ratio        = 2.0
)

// config is the parsed command line.
type config struct {
	addr        string
	rpc         string
	concurrency int
	conns       int
	keys        int
	duration    time.Duration
	warmup      time.Duration
	timeout     time.Duration
	output      string
	compare     bool
	baseline    string
	redisAddr   string
	valueSize   int
	keyPrefix   string
	allowRemote bool
}

// parseFlags reads args into a config. Errors match errUsage, except
// flag.ErrHelp for --help.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("resilbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:50051", "resilienced address host:port (loopback unless --allow-remote)")
	fs.StringVar(&c.rpc, "rpc", "health", "RPC to load: "+strings.Join(targetNames(), ", "))
	fs.IntVar(&c.concurrency, "concurrency", 64, "concurrent callers, each issuing one call after the other")
	fs.IntVar(&c.conns, "conns", 4, "gRPC client connections the callers are spread over (at most --concurrency are used)")
	fs.IntVar(&c.keys, "keys", 100, "distinct keys (and breakers) the calls are spread over; cache-get prefills them")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured run time")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "unmeasured run time before --duration")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "deadline of each call")
	fs.StringVar(&c.output, "output", "text", "report format: text or json")
	fs.BoolVar(&c.compare, "compare", false, "run health first, then --rpc, and report the ratios (goal: throughput >= 0.60x, p99 <= 2x)")
	fs.StringVar(&c.baseline, "baseline", "health", "the run --compare measures --rpc against (e.g. redis-get for cache-get)")
	fs.StringVar(&c.redisAddr, "redis-addr", "127.0.0.1:6379", "Redis host:port for the redis-get and redis-set targets (direct go-redis calls, no resilienced)")
	fs.IntVar(&c.valueSize, "value-size", 64, "bytes per value for cache-set and the cache-get prefill")
	fs.StringVar(&c.keyPrefix, "key-prefix", "resilbench/", "prefix of every key and breaker name used")
	fs.BoolVar(&c.allowRemote, "allow-remote", false, "allow a non-loopback --addr")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: resilbench [flags]\n\nLoad generator for resilienced (see `go doc ./cmd/resilbench`).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := cliflag.Parse(fs, args); err != nil {
		return c, err
	}
	return c, c.validate()
}

// validate checks the values of c.
func (c config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{errUsage}, args...)...)
	}
	switch {
	case lookupTarget(c.rpc) == nil:
		return bad("--rpc %q: want one of %s", c.rpc, strings.Join(targetNames(), ", "))
	case lookupTarget(c.baseline) == nil:
		return bad("--baseline %q: want one of %s", c.baseline, strings.Join(targetNames(), ", "))
	case c.concurrency < 1:
		return bad("--concurrency must be >= 1, got %d", c.concurrency)
	case c.conns < 1:
		return bad("--conns must be >= 1, got %d", c.conns)
	case c.keys < 1:
		return bad("--keys must be >= 1, got %d", c.keys)
	case c.duration <= 0:
		return bad("--duration must be > 0, got %v", c.duration)
	case c.warmup < 0:
		return bad("--warmup must be >= 0, got %v", c.warmup)
	case c.timeout <= 0:
		return bad("--timeout must be > 0, got %v", c.timeout)
	case c.output != "text" && c.output != "json":
		return bad("--output %q: want text or json", c.output)
	case c.valueSize < 0:
		return bad("--value-size must be >= 0, got %d", c.valueSize)
	case len(c.keyPrefix) > 200:
		return bad("--key-prefix must be at most 200 bytes (keys are at most 256), got %d", len(c.keyPrefix))
	}
	if err := checkAddr(c.redisAddr, c.allowRemote); err != nil {
		return fmt.Errorf("--redis-addr: %w", err)
	}
	return checkAddr(c.addr, c.allowRemote)
}

// checkAddr makes sure that addr is host:port (or a unix: target) and, unless
// allowRemote, that it is on this machine: a load generator aimed at the
// wrong host is an incident.
func checkAddr(addr string, allowRemote bool) error {
	if strings.HasPrefix(addr, "unix:") {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return fmt.Errorf("%w: --addr %q: want host:port", errUsage, addr)
	}
	if allowRemote || strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w: --addr %q is not a loopback address; pass --allow-remote to load another host", errUsage, addr)
}

// run is the whole command: it parses args, loads the server and writes the
// report to stdout. See the package doc for the exit status each error means.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	cfg.conns = min(cfg.conns, cfg.concurrency)

	conns, err := dial(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()

	targets := []*target{lookupTarget(cfg.rpc)}
	if cfg.compare {
		targets = []*target{lookupTarget(cfg.baseline), targets[0]}
	}
	rep := report{}
	var runErr error
	for _, t := range targets {
		res, err := runTarget(ctx, cfg, t, conns)
		if err != nil {
			runErr = err
			break
		}
		rep.Runs = append(rep.Runs, res)
		if cfg.output == "text" {
			writeRunText(stdout, res)
		}
		if res.Interrupted {
			break
		}
	}
	if cfg.compare && len(rep.Runs) == 2 {
		c := compareRuns(rep.Runs[0], rep.Runs[1])
		rep.Compare = &c
		if cfg.output == "text" {
			writeCompareText(stdout, c)
		}
	}
	if cfg.output == "json" && len(rep.Runs) > 0 {
		if err := writeJSON(stdout, rep); err != nil {
			return err
		}
	}
	if runErr != nil {
		return runErr
	}
	for _, r := range rep.Runs {
		if r.Interrupted {
			return fmt.Errorf("%w during %s: partial results printed", errInterrupted, r.RPC)
		}
		if r.Calls == 0 {
			return fmt.Errorf("%s: %w: no call completed in %v", r.RPC, errAllFailed, cfg.duration)
		}
		if r.Errors == r.Calls {
			return fmt.Errorf("%s: %w (%d calls; %s)", r.RPC, errAllFailed, r.Calls, r.firstError())
		}
	}
	return nil
}

// dial opens cfg.conns connections to cfg.addr and checks each with one
// health check, so that the connections are up before anything is measured
// and a wrong address fails at once. A server without the health service
// (UNIMPLEMENTED) is accepted.
func dial(ctx context.Context, cfg config) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, 0, cfg.conns)
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for range cfg.conns {
		c, err := grpc.NewClient(cfg.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("%w: --addr %q: %v", errUsage, cfg.addr, err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		cctx, cancel := context.WithTimeout(ctx, cfg.timeout)
		_, err := healthpb.NewHealthClient(c).Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err != nil && status.Code(err) != codes.Unimplemented {
			closeAll()
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%w while connecting", errInterrupted)
			}
			return nil, fmt.Errorf("cannot reach %s: %w", cfg.addr, err)
		}
	}
	return conns, nil
}
