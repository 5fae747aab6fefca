// Package client is the Go SDK of the TopDeck resilience service: it wraps
// Acquire and ReportOutcome around outgoing calls so that callers never
// hand-write them.
//
// Start with New over a gRPC connection the caller owns:
//
//	conn, _ := grpc.NewClient("resilience:50051", grpc.WithTransportCredentials(insecure.NewCredentials()))
//	rc := client.New(conn)
//
// Then, depending on what the call needs:
//
//   - Rate limits: Check answers at once; Wait holds the caller (within its
//     deadline) until tokens are there. Limits are inline (RateLimit) or
//     named in the server configuration (Policy).
//   - Several limits in one call: AndLimit adds one (a user's and its
//     organisation's, say), all or nothing: a refusal charges none and
//     names the refusing key (Decision.LimitedBy, every limit's answer in
//     Decision.Limits).
//   - Fleet-wide concurrency limits (a distributed bulkhead):
//     RateLimit.MaxInFlight with InFlightLease, alone or with a rate. Do,
//     Call, Allow's done and the middleware give the slot back when the
//     call ends (in its ReportOutcome, or a Release without a breaker),
//     also after a panic or the end of the context; after Check or Wait,
//     Client.Release does. A slot never given back (a process that died)
//     is reclaimed when its lease ends.
//   - Circuit breakers: Do (or the generic Call) runs a function through a
//     breaker and reports its outcome with the probe permit and generation;
//     Allow is the two-step form for code that cannot be wrapped. An open
//     breaker returns a *RejectedError matching ErrOpen that carries the
//     retry-after.
//   - Middleware: UnaryClientInterceptor, StreamClientInterceptor and
//     RoundTripper do acquire -> call -> report for every outgoing gRPC
//     call, stream or HTTP request. They are package-level constructors
//     over Guard, the one method they need (Admit); *Client implements
//     it, and its methods of the same names are shorthands.
//   - Upstream feedback, without caller code: the RoundTripper reads
//     Retry-After (on a 429 or 503), X-RateLimit-Remaining and
//     X-RateLimit-Reset (on any answer; a reset of 1e9 or more is a Unix
//     time, a smaller one a delay in seconds: UpstreamFromHTTP), and the
//     interceptors the RetryInfo of a RESOURCE_EXHAUSTED or UNAVAILABLE
//     status (UpstreamFromGRPC). Through a FeedbackGuard (*Client is one)
//     they report it for the route's Key: the service pauses the key
//     fleet-wide (ReasonUpstreamThrottled) and lowers its bucket, so one
//     instance's 429 makes the whole fleet back off. Client.ReportUpstream
//     does the same from the caller's own code.
//   - The shared cache: Cache, with typed JSON helpers (GetJSON, SetJSON)
//     and GetOrLoad, which loads once per key across goroutines and still
//     returns the loader's value when the service is degraded or down.
//
// Each method takes its own option type, so that an option it would ignore
// does not compile: Check takes CheckOption (Cost, DryRun, AndLimit), Wait
// takes WaitOption (Cost, MaxWait, AndLimit), Allow, Do and Call take
// AllowOption (Cost, MaxWait, WithRateLimit, AndLimit).
//
// Subpackage retry retries with exponential backoff and full jitter,
// honouring a server's retry-after; subpackage pool runs a batch over a
// bounded number of workers and tracks every failure.
//
// When the service cannot be reached, limits and breakers are decided with
// local, per-process state (Decision.Local) unless WithFailClosed is given,
// by the same decision as the service's (package admission); a caller is
// never held past its deadline. Locally, several limits are still all or
// nothing and concurrency limits still bound the calls in flight, but per
// process: a MaxInFlight of 20 admits 20 calls in each process. Upstream
// feedback is then recorded in the local limiter (its keys are paused in
// this process only). Slots the service granted and cannot be told to
// release while it is unreachable come back when their lease ends.
package client
