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
// Every method wraps the Redis error ("redisstore: get: ...") and never
// reports a Redis failure as a missing key. Time comes from Redis alone:
// expiry is Redis's own.
package redisstore
