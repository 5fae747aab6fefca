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
//   - The shared cache: Cache, with typed JSON helpers (GetJSON, SetJSON)
//     and GetOrLoad, which loads once per key across goroutines and still
//     returns the loader's value when the service is degraded or down.
//
// Each method takes its own option type, so that an option it would ignore
// does not compile: Check takes CheckOption (Cost, DryRun), Wait takes
// WaitOption (Cost, MaxWait), Allow, Do and Call take AllowOption (Cost,
// MaxWait, WithRateLimit).
//
// Subpackage retry retries with exponential backoff and full jitter,
// honouring a server's retry-after; subpackage pool runs a batch over a
// bounded number of workers and tracks every failure.
//
// When the service cannot be reached, limits and breakers are decided with
// local, per-process state (Decision.Local) unless WithFailClosed is given,
// by the same decision as the service's (package admission); a caller is
// never held past its deadline.
package client
