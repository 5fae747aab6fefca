// Package server is the gRPC face of the resilience service: the handlers of
// ResilienceService and CacheService, the interceptor chain (correlation id,
// structured logging, panic recovery), gRPC health and reflection.
//
// It is the only package that maps between protobuf messages and the domain
// packages (limiter, breaker, cache), and the only one that turns domain
// errors into gRPC status codes. Every handler validates its input first:
// bad input is INVALID_ARGUMENT with a message that starts with the field's
// name and a BadRequest detail naming it.
//
// It decides nothing itself: Acquire is one admission.Admitter decision
// (package admission), mapped from and to the API. It builds no store: it
// receives them as interfaces (Stores) from its caller, cmd/resilienced,
// which picks the memory or Redis implementations (see NewBackends).
package server
