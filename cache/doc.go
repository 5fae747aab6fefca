// Package cache is the shared cache of the resilience service: opaque byte
// values under string keys, each with a time to live, shared by every replica
// of the service through a Store.
//
// The package holds these pieces:
//
//   - Store, the interface a backend implements (context first, an error on
//     every method). MemoryStore is the embedded in-process store (LRU with
//     TTL, bounded in entries and bytes); the redisstore sub-package is the
//     Redis one, shared by the whole fleet.
//   - Cache, the orchestrator the server calls. It validates input (key,
//     ttl, value size), applies the default TTL, shares concurrent reads of
//     one key (single flight), degrades gracefully when the store fails
//     (results carry Degraded and the store error instead of failing the
//     call) and counts hits, misses, sets, deletes and errors.
//   - Fleet-wide statistics. Each Cache counts in local atomics and a flush
//     loop (Cache.Run) adds the deltas to the store's StatsStore every
//     FlushInterval, so counting never costs a store round trip per call and
//     every replica sees the fleet totals within about a second.
//   - Invalidations. A store that is a Feed (MemoryStore in process,
//     redisstore over Redis pub/sub, one channel per key prefix) announces
//     every Set, Delete and DeletePattern, whichever process made it. While
//     Cache.Run follows the feed (one subscription per Cache, however many
//     watchers), Cache.Watch hands the invalidations to any number of
//     watchers (the service's WatchInvalidations streams) and the Cache's
//     memory layer answers Gets. Expiry is not announced: a copy never
//     outlives the TTL its read reported.
//   - Near, a bounded (entries, bytes; LRU) in-process copy of recently
//     read entries, kept right by invalidations: the Cache's memory layer
//     and the Go SDK's near cache. It answers only while its invalidations
//     follow without a gap, and a read in flight when an invalidation of its
//     key arrives fills nothing.
//
// Patterns given to DeletePattern follow Redis MATCH glob rules (see Match):
// "*" matches any run of bytes including "/", "?" one byte, "[...]" a class
// with "^" negation and "a-z" ranges, and "\" escapes the next byte.
//
// The package never imports gRPC or protobuf; the server maps ArgumentError
// to INVALID_ARGUMENT and results with Degraded set to degraded responses.
package cache
