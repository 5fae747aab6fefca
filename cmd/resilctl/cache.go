package main

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

var (
	cacheGet = &command{
		name: "cache get", args: "KEY [--raw]",
		short: "read a value",
		long: `Reads one key. Table: key, found, value (as text when it is printable
UTF-8, Go-quoted otherwise), size, ttl. JSON: GetResponse (value in
base64). --raw writes the value's bytes only, nothing else, whatever
--output says; a miss then writes nothing to stdout and a note to stderr.
A miss is an answer: exit 0.`,
	}
	cacheSet = &command{
		name: "cache set", args: "KEY VALUE [--ttl D]",
		short: `write a value (VALUE "-": read stdin)`,
		long: `Writes VALUE under KEY for --ttl (0: the server's default_ttl). VALUE "-"
reads the value from stdin (binary safe); a value that starts with "-"
goes after "--". JSON: SetResponse.`,
	}
	cacheDel = &command{
		name: "cache del", args: "KEY...",
		short: "delete keys",
		long:  `Deletes the keys and prints how many existed. JSON: DeleteResponse.`,
	}
	cacheDeletePattern = &command{
		name: "cache delete-pattern", args: "PATTERN",
		short: "delete every key matching a glob",
		long: `Deletes every key matching PATTERN, a glob: * any run, ? one character,
[...] a class, \ escapes. Quote it for the shell. JSON: DeletePatternResponse.`,
	}
	cacheStats = &command{
		name: "cache stats", args: "",
		short: "fleet-wide cache statistics",
		long:  `Prints the fleet-wide cache statistics. JSON: GetStatsResponse.`,
	}
)

// CacheCommand runs "resilctl cache ...". Not safe for concurrent use.
type CacheCommand struct {
	g *globals
}

// Run runs the subcommand named by args[0] with the rest of args.
func (c *CacheCommand) Run(ctx context.Context, args []string) error {
	return runGroup(ctx, cacheGroup, c.g.stdout, args, subcommands{"get": c.get, "set": c.set, "del": c.del, "delete-pattern": c.deletePattern, "stats": c.stats})
}

func (c *CacheCommand) get(ctx context.Context, args []string) error {
	fs := newFlagSet("get")
	raw := fs.Bool("raw", false, "write the value's bytes only")
	pos, err := parseArgs(cacheGet, fs, c.g.stdout, args, 1, 1, "KEY")
	if err != nil {
		return err
	}
	resp, err := call(ctx, c.g, c.g.cache, func(ctx context.Context, cs resiliencev1.CacheServiceClient) (*resiliencev1.GetResponse, error) {
		return cs.Get(ctx, &resiliencev1.GetRequest{Key: pos[0]})
	})
	if err != nil {
		return err
	}
	switch {
	case *raw:
		if !resp.GetFound() {
			fmt.Fprintf(c.g.stderr, "resilctl: cache get: %q not found\n", pos[0])
		}
		_, err = c.g.stdout.Write(resp.GetValue())
		return err
	case c.g.json():
		return writeJSON(c.g.stdout, resp)
	default:
		c.g.warnDegraded(resp.GetDegraded())
		return writeKV(c.g.stdout, getRows(pos[0], resp))
	}
}

func (c *CacheCommand) set(ctx context.Context, args []string) error {
	fs := newFlagSet("set")
	ttl := fs.Duration("ttl", 0, "time to live (0: the server's default_ttl)")
	pos, err := parseArgs(cacheSet, fs, c.g.stdout, args, 2, 2, "KEY and VALUE")
	if err != nil {
		return err
	}
	value := []byte(pos[1])
	if pos[1] == "-" {
		if value, err = io.ReadAll(c.g.stdin); err != nil {
			return fmt.Errorf("cannot read the value from stdin: %w", err)
		}
	}
	req := &resiliencev1.SetRequest{Key: pos[0], Value: value}
	if *ttl != 0 {
		req.Ttl = durationpb.New(*ttl)
	}
	return cacheAnswer(ctx, c, func(ctx context.Context, cs resiliencev1.CacheServiceClient) (*resiliencev1.SetResponse, error) {
		return cs.Set(ctx, req)
	}, func(resp *resiliencev1.SetResponse) []kv {
		return []kv{
			{"key", pos[0]},
			{"stored", strconv.FormatBool(resp.GetStored())},
			{"size", fmt.Sprintf("%d bytes", len(value))},
			{"degraded", strconv.FormatBool(resp.GetDegraded())},
		}
	})
}

func (c *CacheCommand) del(ctx context.Context, args []string) error {
	fs := newFlagSet("del")
	keys, err := parseArgs(cacheDel, fs, c.g.stdout, args, 1, -1, "KEY")
	if err != nil {
		return err
	}
	return cacheAnswer(ctx, c, func(ctx context.Context, cs resiliencev1.CacheServiceClient) (*resiliencev1.DeleteResponse, error) {
		return cs.Delete(ctx, &resiliencev1.DeleteRequest{Keys: keys})
	}, func(resp *resiliencev1.DeleteResponse) []kv {
		return []kv{
			{"deleted", strconv.FormatInt(resp.GetDeleted(), 10)},
			{"degraded", strconv.FormatBool(resp.GetDegraded())},
		}
	})
}

func (c *CacheCommand) deletePattern(ctx context.Context, args []string) error {
	fs := newFlagSet("delete-pattern")
	pos, err := parseArgs(cacheDeletePattern, fs, c.g.stdout, args, 1, 1, "PATTERN")
	if err != nil {
		return err
	}
	return cacheAnswer(ctx, c, func(ctx context.Context, cs resiliencev1.CacheServiceClient) (*resiliencev1.DeletePatternResponse, error) {
		return cs.DeletePattern(ctx, &resiliencev1.DeletePatternRequest{Pattern: pos[0]})
	}, func(resp *resiliencev1.DeletePatternResponse) []kv {
		return []kv{
			{"pattern", pos[0]},
			{"deleted", strconv.FormatInt(resp.GetDeleted(), 10)},
			{"degraded", strconv.FormatBool(resp.GetDegraded())},
		}
	})
}

func (c *CacheCommand) stats(ctx context.Context, args []string) error {
	fs := newFlagSet("stats")
	if _, err := parseArgs(cacheStats, fs, c.g.stdout, args, 0, 0, ""); err != nil {
		return err
	}
	return cacheAnswer(ctx, c, func(ctx context.Context, cs resiliencev1.CacheServiceClient) (*resiliencev1.GetStatsResponse, error) {
		return cs.GetStats(ctx, &resiliencev1.GetStatsRequest{})
	}, statsRows)
}

// cacheResponse is the response of a cache RPC that may be degraded.
type cacheResponse interface {
	proto.Message
	GetDegraded() bool
}

// cacheAnswer makes the cache RPC rpc and prints its answer (see
// printAnswer): as JSON, or as rows(resp).
func cacheAnswer[R cacheResponse](ctx context.Context, c *CacheCommand, rpc func(context.Context, resiliencev1.CacheServiceClient) (R, error), rows func(R) []kv) error {
	resp, err := call(ctx, c.g, c.g.cache, rpc)
	if err != nil {
		return err
	}
	return c.g.printAnswer(resp, resp.GetDegraded(), rows(resp))
}
