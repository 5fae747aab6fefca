// Package redisstore is a limiter.Store that keeps token buckets in Redis, so
// that every replica of the service shares them.
//
// Each decision is one Lua script (gcra.lua) run atomically on one key,
// <prefix>rl:{<key>} (EVALSHA, falling back to EVAL). The script reads
// redis.call("TIME") as its only clock, so the clocks of the replicas never
// matter. The key holds the bucket's TAT in microseconds and the limit it was
// written under, and expires when the bucket is full again, so idle buckets
// vanish. The limit is passed with every call; a bucket used under another
// limit carries its state over as tokens used, at most the new burst (see
// limiter.Store). A reservation's caller who gives up has its tokens given
// back by Cancel (cancel.lua) when nothing was taken after it.
//
// Concurrent decisions are batched by default: while one pipeline of
// decisions is in flight, new ones queue up and go together in the next
// pipeline, so that under load many decisions share a round trip. On one
// node (a *redis.Client, Sentinel's included) a batch is one EVALSHA that
// makes its decisions in order, each as if alone, with one TIME and one read
// of their keys: the fixed cost of a script call is paid once a batch. On a
// Cluster (or a Ring) each decision is its own EVALSHA, routed by its key.
// The callers send the batches themselves; the Store starts no goroutine.
// See New and WithBatching.
//
// The key's hash tag {<key>} puts the bucket in one Redis Cluster slot; a
// prefix must not contain braces.
//
// Errors from Redis (unreachable, timeout, malformed reply) are returned
// wrapped with limiter.ErrStoreUnavailable and are never a denial. A context
// that ends first gives its own error, ctx.Err().
package redisstore
