// Package limiter is a token-bucket rate limiter built on GCRA (the generic
// cell rate algorithm), with pluggable storage so that many replicas can share
// one bucket per key.
//
// # Model
//
// A [Limit] describes a bucket that holds at most Burst tokens (Burst 0 means
// MaxCalls) and refills at MaxCalls tokens per Window. A call of cost n takes n
// tokens. GCRA keeps a single number per bucket, the theoretical arrival time
// (TAT): the instant at which the bucket will be full again. Admitting cost n
// moves the TAT n emission intervals (Window/MaxCalls) into the future, and a
// call is admitted when the TAT after admission is no further ahead of now than
// Burst emission intervals.
//
// The arithmetic is exact: time is counted in whole microseconds and the
// emission interval, which need not be a whole number of microseconds, is kept
// as a fraction, so over any interval of length t the admitted cost of one key
// is at most Burst + rate*t, and a call is denied only when admitting it would
// break that bound. A denied call consumes nothing.
//
// # Limit changes
//
// A bucket belongs to its key, not to its limit: the limit comes with every
// call, and the same key may be used under another one (an inline limit, a
// reload, an override). A bucket remembers the limit it was last charged
// under; used under a different one (MaxCalls, Window or effective Burst
// differ), its state carries over as tokens already used: the old debt
// divided by the old limit's time per token, rounded up, and at most the new
// Burst. So no limit ever refuses more than a fully drained bucket of its own
// would: a call under 1 per year on a key leaves a limit of 10 per minute on
// it with 9 tokens, not a year to wait. Under an unchanged limit nothing is
// converted and the answers are exact as above. See [Store].
//
// # Answers
//
// Every decision returns a [Result]: whether the call is allowed, the whole
// tokens left, the exact time until the requested tokens are there (on a
// denial) and until the bucket is full again. A caller that is willing to wait
// passes a maximum wait: when the tokens will be there in time, they are
// reserved (first come, first served) and the Result says how long to wait
// before proceeding. [Store.Peek] answers as Take would without changing
// anything.
//
// # Reservations given back
//
// A reservation whose caller gives up before its Wait is over (its context
// ends, its replica stops holding it) is given back with [Canceler.Cancel],
// which [Limiter.Wait] calls: the bucket returns to the state it had before
// the reservation, but only when nothing was taken on it since (later
// reservations queued behind it keep their places, and so does it).
//
// # Charges nobody got
//
// A Take whose reply is lost (the store timed out, the connection broke, the
// caller's context ended) may still have been carried out: a script that
// timed out on the client still runs when a hung Redis resumes, and a script
// cannot tell that its caller stopped waiting without a clock other than
// Redis TIME. Such a Take charges its cost although its caller was answered
// by the failure policy (or not at all). The bound is exact: the tokens
// charged to no one are at most the total cost of the Takes whose replies
// were lost. With the Limiter's health tracking that is, per outage, the
// decisions already sent when the first failure was seen (with the Redis
// store's batching at most MaxInFlight batches of MaxBatch decisions, 4 x
// 128 by default) plus one probe per retry interval. Such charges only ever
// make a bucket admit less, never more: the bound admitted <= Burst + rate*t
// holds for the calls that did proceed, and the bucket is back to full within
// its refill time of the outage.
//
// # Stores and the Limiter
//
// A [Store] keeps the buckets. [MemoryStore] keeps them in process (exact on
// one replica); package limiter/redisstore keeps them in Redis, one Lua script
// per decision with Redis TIME as the only clock, so every replica shares
// them. Package limiter/storetest is the conformance suite every Store passes.
//
// A [Limiter] sits in front of a Store. It validates requests, answers repeated
// denials from a small local cache without asking the store, and applies a
// [FailurePolicy] when the store fails: decide with a local fallback bucket
// (the answer says Degraded) or fail with [ErrStoreUnavailable]. A store error
// is never reported as a denial. After a failure it stops calling the store
// for a retry interval (package internal/storehealth), so a hung store costs
// one timeout, not one per call.
package limiter
