// Command resilienced is the TopDeck resilience service: a gRPC server that
// gives a fleet of callers one shared rate limiter, circuit breaker and cache,
// backed by Redis (or, for a single replica, an embedded in-memory store).
//
// Usage:
//
//	resilienced [--listen 127.0.0.1:50051] [--redis-url URL] [--config FILE] [--log-level info] [--log-format json]
//
// Without an auth: section in --config and without TLS it listens on loopback
// only, unless --insecure; see docs/security.md.
//
// Every flag can also be set through its environment variable; see --help.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// defaultGOGC is the garbage collector's target (GOGC) when the environment
// sets none. The service's live heap is small (tens of MB with Redis) and
// every call allocates, so at Go's default of 100 the collector, its assists
// and the regrowth of the stacks it shrinks took about 15 % of the CPU of an
// allowed Acquire (docs/benchmarks.md). At 400 the heap peaks nearer five
// times the live heap; GOMEMLIMIT caps it (the collector then runs more as
// the heap nears the limit), and GOGC=100 restores Go's default.
const defaultGOGC = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGOGC)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := NewMain(os.Stdout, os.Stderr).Run(ctx, os.Args[1:])
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "resilienced:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "resilienced:", err)
		os.Exit(1)
	}
}
