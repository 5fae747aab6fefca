// Command resilctl is the operators' CLI for a running resilienced: it lists,
// inspects, watches and resets circuit breakers, checks rate limits without
// consuming them, and reads and writes the shared cache.
//
// Usage:
//
//	resilctl [global flags] COMMAND [flags] [args]
//
// Global flags (before the command):
//
//	--addr HOST:PORT      the server (default localhost:50051, env RESILIENCE_ADDR)
//	--timeout D           deadline of each RPC (default 5s; breakers watch has none)
//	--output table|json   output format (default table)
//	--correlation-id ID   sent as x-correlation-id, to find the call in the server's logs
//
// Commands:
//
//	breakers list [--prefix P] [--page-size N]     every breaker (pages through ListBreakers)
//	breakers get NAME                              one breaker's status and policy
//	breakers watch [--prefix P]                    stream state transitions until Ctrl-C
//	breakers reset NAME [--open]                   force a breaker CLOSED (or OPEN), fleet-wide
//	limits check KEY (--policy NAME | --max-calls N --window D [--burst N] | --max-in-flight N --in-flight-lease D) [--cost N] [--and KEY=POLICY]...
//	                                               would a call be admitted now? consumes nothing
//	cache get KEY [--raw]                          read a value (--raw: the bytes only)
//	cache set KEY VALUE [--ttl D]                  write a value (VALUE "-": read stdin)
//	cache del KEY...                               delete keys
//	cache delete-pattern PATTERN                   delete every key matching a glob
//	cache stats                                    fleet-wide cache statistics
//	help [COMMAND...]                              help; every command also takes --help
//
// Flags of a command may come before or after its arguments; "--" ends the
// flags (for a value that starts with "-").
//
// # Output
//
// --output table (the default) is for people: aligned columns
// (text/tabwriter) for lists, "field  value" lines for one object, one line
// per event for watch. Times are UTC (RFC 3339, milliseconds), durations Go
// style (1m30s), states and reasons without their enum prefix (OPEN,
// RATE_LIMITED). A degraded answer (shared store unreachable, so the
// replica's local view) is flagged on stderr.
//
// --output json is for scripts. Each answer is the proto3 JSON mapping
// (protojson) of a message of proto/topdeck/resilience/v1 with
// UseProtoNames and EmitUnpopulated: field names as in the .proto
// (snake_case), every field present even when zero (an unset timestamp,
// duration or message is null), enums as their full
// names ("CIRCUIT_STATE_OPEN"), durations as strings ("1.500s"),
// timestamps RFC 3339, int64/uint64 as JSON strings ("42", per the proto3
// mapping), bytes as base64. The whitespace is normalised (two-space
// indent), so the output is byte-stable too. What is printed:
//
//	breakers list            {"breakers": [BreakerStatus, ...]} (all pages)
//	breakers get, reset      BreakerStatus
//	breakers watch           one BreakerEvent per line (newline-delimited JSON)
//	limits check             AcquireResponse
//	cache get                GetResponse (value in base64)
//	cache set                SetResponse
//	cache del                DeleteResponse
//	cache delete-pattern     DeletePatternResponse
//	cache stats              GetStatsResponse
//
// The proto3 mapping was chosen over a struct of our own so that the JSON is
// documented field by field by the .proto files, is the same as grpcurl's,
// and gains new fields without a change here.
//
// # Exit status
//
// 0 on success (a denied limit check or a cache miss is an answer, not an
// error; so is the end of a watch by Ctrl-C, SIGTERM or the server); 1 when
// an RPC fails, with its status code and message on stderr, e.g.
//
//	resilctl: NOT_FOUND: policy: no limit named "x" in the server configuration
//
// 2 for a bad command line (unknown command or flag, missing or extra
// arguments), with a usage line on stderr. --help prints help and exits 0.
//
// # Examples
//
//	resilctl breakers list --prefix azure-devops/
//	resilctl --output json breakers get azure-devops | jq -r .state
//	resilctl breakers reset azure-devops            # close it again
//	resilctl breakers watch
//	resilctl limits check org-42 --policy azure-devops
//	resilctl limits check org-42 --max-calls 200 --window 1m --cost 5
//	resilctl limits check user-7 --policy ado-user --and org-42=ado-org --and ado=ado-in-flight
//	resilctl cache set greeting hello --ttl 10m
//	resilctl cache get --raw greeting > value.bin
//	resilctl cache delete-pattern 'session:*'
package main
