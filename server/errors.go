package server

import (
	"context"

	"github.com/topdeck/resilience/internal/grpcerr"
)

// toStatus maps a domain error met while serving a call with context ctx to a
// gRPC status, with the service's one table (internal/grpcerr, which
// envoyrls uses too). It is the one place where the server's domain errors
// become codes.
//
// DEADLINE_EXCEEDED and CANCELLED are answered only when the caller's own
// context ended; a store call that ran out of the service's own store timeout
// (or failed in any other way) is UNAVAILABLE, however the store's error
// reads.
func toStatus(ctx context.Context, err error) error { return grpcerr.Status(ctx, err) }
