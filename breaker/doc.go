// Package breaker is a fleet-wide circuit breaker.
//
// A breaker is named (for example after the upstream it protects) and moves
// through three states:
//
//	CLOSED --(failures)--> OPEN --(recovery_timeout)--> HALF_OPEN --(probes succeed)--> CLOSED
//	                                                       |
//	                                                       +--(a probe fails)--> OPEN
//
// In CLOSED every call is admitted. In the default consecutive mode,
// Settings.FailureThreshold failures in a row open the breaker (a success
// resets the count). In the failure-rate mode (Settings.Mode =
// ModeFailureRate, as in resilience4j or Polly) the breaker opens when, over
// the rolling Settings.Window, at least Settings.MinimumCalls outcomes were
// reported and the share of failures reached Settings.FailureRateThreshold.
// The window is kept as 10 buckets of Window/10 each.
//
// In OPEN no call is admitted; Admission.RetryAfter says when a probe may go
// (opened_at + recovery_timeout - now). The first Allow after that moves the
// breaker to HALF_OPEN and admits a probe.
//
// In HALF_OPEN at most Settings.HalfOpenMaxCalls probes are in flight,
// fleet-wide. Each probe holds a lease: a PermitID with a deadline of
// now + Settings.ProbeTimeout. A lease that is neither reported nor released
// before its deadline is reclaimed at the next decision, so a lost probe never
// leaves the breaker stuck half-open. Settings.SuccessThreshold successful
// probes close the breaker; one failed probe opens it again. A permit counts
// once: a second report with the same permit is ignored.
//
// # Generations
//
// Every state change increments the breaker's generation by one. A breaker
// without state (never used, forgotten when idle, or lost with the store's
// data) is CLOSED; its first Allow or Report gives it a state whose
// generation is the store's clock in microseconds (Redis TIME for the Redis
// store), and above every generation the store issued before. Since a
// breaker changes state at most once per store operation and an operation
// takes more than a microsecond, generations never catch up with the clock:
// generations never repeat, even after the store lost its data, so an
// outcome of a call admitted before the loss is stale after it. (The
// argument needs a store clock that does not step back across the loss.)
// Status of a breaker without state reports generation 0 and creates none.
// Allow returns the
// generation and Report takes it back: an outcome whose generation is not the
// current one is ignored and answered with ReportResult.Ignored (never an
// error), so a slow call admitted before the breaker opened cannot count
// against the next state. Generation 0 means "unknown" and applies to the
// current generation. In HALF_OPEN only reports that carry a live permit
// count. A permit carries the generation that issued it ("<gen>.<seq>"): an
// outcome with a permit that is spent, released, reclaimed or of another
// generation is ignored whatever generation comes with it (0 included), so a
// probe's permit, reported again after the breaker closed, never counts in
// the new CLOSED generation.
//
// # Stores
//
// The state lives in a Store. MemoryStore is exact on one replica;
// the redisstore sub-package shares the state between replicas through Redis,
// with one atomic Lua script per decision and Redis TIME as the only clock.
// Both pass the storetest conformance suite.
//
// Breaker wraps a Store and falls back to a per-replica MemoryStore when the
// store is unavailable, marking its answers Degraded. StateCache keeps, per
// replica, the last state of each breaker as published by Store.Watch; given
// to a Breaker (WithStateCache), it lets CLOSED breakers be admitted without
// a store round trip.
//
// Every transition is published as an Event (Store.Watch). The stores fan
// their events out through a Hub, so any number of watchers cost one Redis
// subscription per store. After the store lost its data, StateCache.Resync
// re-reads the breakers the replica knew and announces an Event with
// ReasonDataLoss for each whose state changed without a transition.
//
// # Memory
//
// A replica's memory per breaker name is bounded: StateCache keeps at most
// DefaultCacheMaxEntries entries (about 100 bytes each plus the name) and
// forgets idle ones; MemoryStore forgets breakers unused for their idle TTL;
// the Redis store's memory of registered names is capped (see redisstore).
package breaker
