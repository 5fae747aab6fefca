// Package redisstore is the Redis implementation of cache.Store and
// cache.StatsStore, shared by every replica of the service.
//
// Key layout (prefix defaults to "resilience:", see WithPrefix):
//
//	<prefix>cache:<key>                  string, the value; expiry set with SET PX
//	<prefix>{cache-stats}                hash: hits, misses, sets, deletes, errors
//	<prefix>{cache-stats}:seq:<source>   string, last stats batch applied per Cache
//	                                     (expires after an hour)
//
// Cache entries are independent keys spread over every slot of a Redis
// Cluster; the two stats keys share the hash tag {cache-stats} so the
// stats script runs on Cluster. DeletePattern and Len only ever SCAN
// "<escaped prefix>cache:<pattern>", so they never touch keys outside the
// cache (limiter and breaker keys, other prefixes, the stats hash).
//
// Invalidations: Set (in set.lua, after its SET), Delete and DeletePattern
// (after their UNLINKs) publish what they changed on the pub/sub channel
// <prefix>cache-invalidations, one channel per key prefix, so per tenant.
// Follow (cache.Feed) subscribes to it with one connection and checks that
// the connection still hears Redis with a heartbeat on a channel of its own
// (<prefix>cache-invalidations:hb:<random>) every 250 ms: a subscription that
// has not heard its heartbeat for a second gives up, so writes go unheard
// for at most about that long before the follower knows. Expiry is not
// announced (no keyspace notifications, which need server configuration
// and one subscription per Cluster node): whoever keeps a copy keeps it no
// longer than the TTL its read reported. Writes made around the Store (a
// redis-cli SET, eviction, FLUSHALL) are not announced either.
//
// Every method wraps the Redis error ("redisstore: get: ...") and never
// reports a Redis failure as a missing key. Time comes from Redis alone:
// expiry is Redis's own.
package redisstore
