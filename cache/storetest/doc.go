// Package storetest is the conformance suite every cache.Store runs: the
// in-memory store and the Redis store pass the same tests, through Run.
//
// The suite covers the Store contract (round trip of binary values, TTL and
// expiry, overwrite, Delete counts, DeletePattern glob semantics, Len,
// concurrent use), the StatsStore contract (idempotent AddStats) and the
// Cache on top of the store (fleet-wide statistics across two Cache
// instances sharing one store, Run flushing them).
//
// Stores with an injectable clock get the suite's fake clock and see time
// jump; stores on server time (Redis) ignore it and the suite polls with
// short real TTLs, so the suite stays robust on a slow machine.
//
// Benchmark runs the same benchmarks on every store, so that their figures
// compare.
package storetest
