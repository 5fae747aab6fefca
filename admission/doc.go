// Package admission decides whether one call may go now: the single place
// where a call's breaker and rate limit are put together. The resilience
// server's Acquire and the Go SDK's local fallback (the service being
// unreachable) both decide through an [Admitter], so they answer alike.
//
// # Model
//
// A [Request] names the breaker the call goes through (optional) and the
// rate limits it takes tokens of (today at most one). [Admitter.Decide]
// asks the breaker first: a call refused by an open breaker takes no
// tokens. Then the limit: a call the limiter refuses, or whose caller gives
// up while held for a reservation, gives back the probe lease the breaker
// granted (a HALF_OPEN breaker would otherwise stay full until the lease
// expires), and a refusal by the limiter is never an upstream failure. A
// reservation (the tokens will be there within Request.MaxWait) holds the
// call until then; a caller who leaves first gets its tokens back when
// nothing was taken after them ([limiter.Limiter.Wait]).
//
// [Admitter.Peek] answers the same question without changing anything
// (dry run), with one rule for the breaker: an OPEN breaker refuses until
// its next probe time, a HALF_OPEN one refuses while its probe slots are
// full, a CLOSED one admits.
//
// # Several limits, concurrency slots, upstream pauses, shadow mode
//
// A Request with several limits, or with a concurrency limit
// (limiter.Request.Slots), is decided all or nothing by
// [MultiLimits.AcquireAll] (limiter.MultiStore: one script on one Redis node
// or hash tag, ordered with give-backs across Cluster slots): admitted only
// when every limit admits, none charged otherwise, RetryAfter the longest
// and LimitedBy the limit that set it; every limit's own answer is in
// Decision.Limits. One rate limit alone still goes through Limits.Acquire,
// one gcra.lua, as fast as before. A key paused for its upstream
// (limiter.Pauser) refuses with ReasonUpstreamThrottled, full slots with
// ReasonConcurrencyLimited; with MaxWait a call waits for a slot first come
// first served. A breaker (Circuit.Shadow) or limit (limiter.Request.Shadow)
// in shadow mode is decided but never refuses: Decision.ShadowReason says
// what it would have answered.
//
// The package imports no gRPC and no generated code: the server maps its
// Decision to the API, the SDK to its own Decision.
package admission
