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
// # Leases (hot keys)
//
// One bucket lives on one Redis shard, so one key is decided at most as fast
// as one Redis core runs the script. A [Request] whose Lease ([LeasePolicy])
// is enabled is decided in lease mode instead: the replica takes tokens from
// the shared bucket in a lease (one [Leaser.Lease] round trip, atomic on the
// key, at most MaxTokens), decides the calls that follow from its lease
// locally, without a round trip, and takes the next lease when the current
// one lacks a call's tokens or its TTL is over. Lease sizes adapt: a
// replica's first lease on a key takes what its call needs, each next one up
// to twice what the replica used of the previous one, at most MaxTokens.
// Callers that need tokens while a lease is being fetched wait for it and
// are served from it in order; an expired lease's unused tokens go back with
// the replica's next lease on the key when nothing was taken on the bucket
// since (within one TTL of the expiry), and are otherwise left to refill.
//
// The bucket lends only Burst - rate*TTL of its tokens: it keeps rate*TTL
// (the reserve) as if used, and a replica uses a lease's tokens only before
// its TTL has passed since it sent the request. That makes the bound exact:
//
//   - Never over-admits: over any interval of length t, the fleet admits at
//     most Burst + rate*t, as without leases. Proof: let tau = 1/rate and
//     D = TTL. A lease (or reservation) of k tokens is granted at Redis time
//     c only when TAT' - c <= Burst*tau - D, where TAT' = max(TAT, c) +
//     k*tau, and its tokens are used at instants in [c, c+D) (the replica
//     stops at s+D, s <= c being when it sent the request; a reply that
//     arrives after s+D is not used). The tokens used in [a, b] were lent at
//     instants in [a-D, b]. Without give-backs the TAT never decreases and
//     each grant adds k*tau to it, so after the last of those grants, at c*
//     <= b, TAT >= a - D + L*tau, where L is their total; its admission
//     gives TAT <= c* + Burst*tau - D. Hence L*tau <= b - a + Burst*tau: L
//     <= Burst + rate*(b-a). A give-back (or Cancel) is made only when the
//     bucket still holds exactly the state the lease left, so it leaves the
//     state that lease would have left had it taken fewer tokens, which
//     the replica never uses: the proof applies to that history.
//   - Under-admission: a call of cost n is refused only when its replica's
//     live lease holds l < n tokens and the bucket cannot lend n-l while
//     keeping the reserve. Beyond the tokens callers used, the bucket counts
//     as used: the reserve (rate*TTL, never lent, so a full bucket admits
//     Burst - rate*TTL at once and the rest as it refills); the unused
//     tokens of live leases, at most MaxTokens per replica and key; and the
//     unused tokens of leases that expired and could not be given back, at
//     most MaxTokens per replica and key per TTL (a replica holds one lease
//     per key at a time, and a lease ends either used up, its last tokens
//     going to the call that fetches the next, or by expiring), which refill
//     at the limit's rate like any used token. So with R replicas calling
//     without pause from a full bucket, the fleet admits over [0, t] at least
//     Burst + rate*t - rate*TTL - R*MaxTokens - (n-1) when leases are used up
//     within their TTL (a replica's demand at least MaxTokens per TTL), and
//     otherwise fewer by at most R*MaxTokens per TTL, for the leases that
//     expired part-used.
//
// The bound holds when every replica uses the key with the same limit and
// lease policy: a key decided both per call (lease mode off) and from
// leases may admit up to rate*TTL more over an interval, the reserve the
// per-call decisions do not keep. (A leased limit decided together with
// other limits, by a MultiStore, keeps the reserve and so counts as decided
// from leases.) Replicas' clocks need not agree with Redis's, only run at
// its rate.
//
// Lease mode changes nothing else: the deny cache answers refusals (by the
// tokens the bucket lacked), a failed lease round trip is a store failure
// answered by the request's FailurePolicy with the store's health tracked,
// a live lease still answers while the store is down (its tokens were
// taken), a lease whose reply came after its TTL is not used
// ([ErrLeaseLate], answered by the policy), and a reservation (max_wait) is
// made on the bucket as by Take, with the reserve kept, and given back with
// Cancel. Peek answers from the shared bucket, where leased tokens count as
// used, and an allowed Result's Remaining and ResetAfter are this replica's
// lease plus the bucket as of its last lease. A call's cost can be at most
// [LeasePolicy.LeaseCapacity]. A store that does not implement [Leaser]
// decides a leased limit call by call.
//
// An upstream pause ([Limiter.Pause]) applies to leases too: a paused key
// lends and reserves nothing (the refusal is Paused), and the Limiter the
// pause is reported through ends its own live lease on the key at once (its
// unused tokens go back with its next lease, as for one that expired; a
// lease on its way back when the pause came lets its own call go and keeps
// nothing). Other replicas learn of the pause when their live leases run
// out: after a pause the fleet admits at most what those leases hold, at
// most MaxTokens per other replica, and nothing later than one TTL after
// the report.
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
