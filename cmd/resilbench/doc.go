// Command resilbench is the load generator for a running resilienced. It
// produces the figures in docs/benchmarks.md.
//
// It opens --conns gRPC connections (spread round-robin over the callers,
// since one HTTP/2 connection can be the bottleneck), runs --concurrency
// callers that each issue one RPC after the other for --warmup (not
// measured) and then --duration (measured), and reports calls, errors by
// gRPC code, throughput, latency quantiles (p50, p90, p99, p99.9, max) from a
// fixed-memory log-linear histogram (error below 1%), and what the answers
// said (allowed / denied / degraded for Acquire).
//
// Usage:
//
//	resilbench [--addr 127.0.0.1:50051] [--rpc RPC] [--concurrency 64]
//	           [--duration 10s] [--warmup 2s] [--conns 4] [--keys 100]
//	           [--output text|json] [--compare] [--timeout 5s]
//	           [--value-size 64] [--key-prefix resilbench/] [--allow-remote]
//
// RPC is one of:
//
//	health           grpc.health.v1.Health/Check of the whole server: the baseline
//	acquire          Acquire admitted: a huge inline limit (10^9 per second), keys spread over --keys
//	acquire-denied   Acquire of one key with a limit of 1 per hour: nearly every call denied
//	acquire-breaker  Acquire with a key (huge limit) and a breaker, both spread over --keys
//	cache-get        CacheService.Get of --keys keys that are Set before the run (prefill)
//	cache-set        CacheService.Set of --value-size byte values over --keys keys
//
// --compare runs health first and then --rpc with the same settings over the
// same connections, prints both, and the ratios of --rpc to health:
// throughput ratio (goal >= 0.60) and p99 ratio (goal <= 2.0). The goals are
// reported, not enforced: they do not change the exit status.
//
// Every latency is recorded, errors included; calls that start during the
// warmup are not. Calls still in flight when --duration ends are awaited (each
// is bounded by --timeout), and throughput is the measured calls divided by
// the time from the end of the warmup until the last of them returned.
//
// Output (--output text, the default) is a block per run:
//
//	rpc acquire  addr 127.0.0.1:50051  concurrency 64  conns 4  keys 100  warmup 2s  duration 10s
//	  calls        118237 in 10.004s  (errors 0)
//	  throughput   11819.0 calls/s
//	  latency ms   p50 4.850  p90 10.682  p99 18.350  p99.9 21.889  max 25.625  (min 0.359, mean 5.735)
//	  codes        OK 118237
//	  outcomes     allowed 118237  denied 0  degraded 0
//
// then, with --compare, the ratios and whether the goals are met:
//
//	compare acquire / health
//	  throughput ratio  0.866  (goal >= 0.60: met)
//	  p99 ratio         0.861  (goal <= 2.00: met)
//
// One "error  CODE: message" line follows for each error code seen. With
// --output json one document is printed at the end: {"runs": [...],
// "compare": {...}}, each run with rpc, addr, concurrency, conns, keys,
// warmup_seconds, duration_seconds, elapsed_seconds, interrupted, calls,
// errors, codes (calls by canonical gRPC code name; they add up to calls),
// error_samples (code -> first message), throughput_per_second, latency_ms
// (min, mean, p50, p90, p99, p99_9, max) and outcomes (allowed, denied,
// degraded for Acquire; hit, miss, degraded for cache-get; stored,
// not_stored, degraded for cache-set; serving, not_serving for health;
// degraded overlaps the others and counts OK answers only). compare holds
// baseline, rpc, throughput_ratio, p99_ratio, goal_throughput_ratio,
// goal_p99_ratio, throughput_goal_met, p99_goal_met and goal_met (both goals
// and no errors in either run).
//
// Keys and breakers used are named under --key-prefix ("resilbench/"):
// acquire/N, denied, breaker/N and cache/N. Cache values live for --warmup +
// --duration + 5m.
//
// For safety --addr must be a loopback address (127.0.0.0/8, ::1, localhost)
// or a unix: target; loading any other host needs --allow-remote.
//
// Ctrl-C (SIGINT) or SIGTERM stops the run: the results measured so far are
// printed (marked interrupted) and the exit status is 130. The exit status is 1
// when every measured call failed or nothing could be measured, 2 for a bad
// command line, and 0 otherwise.
//
// Examples:
//
//	# Baseline: the health check with 64 callers over 4 connections.
//	resilbench --rpc health --concurrency 64 --duration 10s
//
//	# The goal in one run: Acquire vs health at 64 callers.
//	resilbench --compare --rpc acquire --concurrency 64 --duration 10s --warmup 2s
//
//	# Denials and breakers, JSON for scripts.
//	resilbench --rpc acquire-denied --output json
//	resilbench --rpc acquire-breaker --keys 1000 --conns 8
//
//	# The cache: 10k prefilled keys read, then 1 KiB writes.
//	resilbench --rpc cache-get --keys 10000
//	resilbench --rpc cache-set --value-size 1024
package main
