// Package redisstore is a breaker.Store kept in Redis, shared by every
// replica of the service.
//
// Each decision is one Lua script (lua/allow.lua, report.lua, reset.lua,
// status.lua, each prefixed with lua/lib.lua) over the keys of one breaker,
// which share the hash tag {<name>} so the scripts also run on Redis Cluster:
//
//	<prefix>br:{<name>}:s   hash: st, gen, fail, opened, succ, seq, cfg
//	<prefix>br:{<name>}:p   sorted set: probe permit -> lease deadline (µs)
//	<prefix>br:{<name>}:w   hash: rolling-window buckets "<idx>c"/"<idx>f"
//	<prefix>br:{<name>}:r   string: registration marker (see below)
//	<prefix>breakers        sorted set (score 0) of the names in use, for List
//	<prefix>breakers:prune-lock  string: held by the replica pruning the registry
//	<prefix>breaker-events  pub/sub channel of transitions (JSON)
//
// The default prefix is "resilience:". A breaker that has seen nothing has no
// keys (it is CLOSED, and Status shows generation 0). Its first Allow or
// Report stores its state, CLOSED at a generation equal to Redis TIME in µs
// (see "Generations" in package breaker): after that the happy path (Allow
// on a CLOSED breaker, a success with no failures counted) writes nothing
// but a TTL renewal at most once per half TTL. Every write sets a TTL of
// IdleTTL + RecoveryTimeout + ProbeTimeout (+ Window in failure-rate mode) on
// the breaker's keys, so idle breakers go away but an OPEN one always
// outlives its recovery timeout. When the keys expire (or Redis loses them)
// the breaker is CLOSED again and its next use starts a generation above
// every earlier one: outcomes carrying an older generation are ignored, so
// old reports cannot count against it.
//
// The registry <prefix>breakers (another Cluster slot) lists the names for
// List. A Store registers a name the first time it sees it and again every
// quarter of the idle TTL (at most 6h) while it keeps using it: it sets the
// name's marker to expire after IdleTTL plus that period, then ZADDs the name.
// A listed name without state shows as CLOSED. Prune (which the server runs
// about once an hour, one replica per hour) removes the names with neither
// marker nor state, so the registry holds the breakers used within the idle
// TTL, not every name ever seen; a pruned name that is used again is
// registered again. The Store's own memory of the names it registered is
// approximate and bounded (64-bit hashes in two generations, at most
// WithMaxRegisteredNames entries, about 24 bytes each): a name it forgot is
// only registered again on its next use.
//
// # Clock
//
// In production the scripts read time only from redis.call("TIME"), so
// replica clocks never matter. WithClockForTesting replaces it with a Go
// clock passed in ARGV: for tests only.
//
// # Errors
//
// A Redis error (connection refused, timeout, cancelled context, unexpected
// reply) is returned wrapped with breaker.ErrStoreUnavailable and the
// original error (both match errors.Is). It is never read as "no state" or as
// OPEN.
//
// # Events
//
// The scripts PUBLISH every transition on <prefix>breaker-events (a plain
// PUBLISH from a script reaches every node's subscribers on Cluster too).
// A Store subscribes once, on its first Watch, with one connection apart
// from the client's pool, and fans the events out to all its watchers
// through a breaker.Hub: any number of watchers (WatchBreakers streams) cost
// one Redis connection per process. A watcher that falls behind by 256
// events is disconnected (its channel closes) rather than holding the others
// back. The subscription publishes a heartbeat every second on a channel of
// its own (<prefix>breaker-events:hb:<random>) and subscribes again on a new
// connection when none has come back for 3s: after a Sentinel failover that
// leaves the old master running, go-redis would otherwise keep the
// subscription on the old master, which hears nothing, until Sentinel
// demotes it (about 10s). A re-subscription sends a ReasonResync event to
// every watcher. Announce delivers an event to the watchers without Redis
// (StateCache.Resync's, after a data loss).
package redisstore
