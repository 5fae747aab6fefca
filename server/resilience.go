package server

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

// resilienceServer implements ResilienceService.
type resilienceServer struct {
	resiliencev1.UnimplementedResilienceServiceServer
	srv  *Server
	deps Deps
}

func (r *resilienceServer) Acquire(ctx context.Context, req *resiliencev1.AcquireRequest) (*resiliencev1.AcquireResponse, error) {
	if _, err := parseAcquire(r.srv.Config(), req); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.Unimplemented, "Acquire is not implemented yet")
}

func (r *resilienceServer) ReportOutcome(ctx context.Context, req *resiliencev1.ReportOutcomeRequest) (*resiliencev1.ReportOutcomeResponse, error) {
	if _, err := parseReport(req); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.Unimplemented, "ReportOutcome is not implemented yet")
}

func (r *resilienceServer) BreakerState(ctx context.Context, req *resiliencev1.BreakerStateRequest) (*resiliencev1.BreakerStateResponse, error) {
	if err := checkName("breaker", req.GetBreaker(), true); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.Unimplemented, "BreakerState is not implemented yet")
}

func (r *resilienceServer) ListBreakers(ctx context.Context, req *resiliencev1.ListBreakersRequest) (*resiliencev1.ListBreakersResponse, error) {
	if _, _, _, err := parseList(req); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.Unimplemented, "ListBreakers is not implemented yet")
}

func (r *resilienceServer) WatchBreakers(req *resiliencev1.WatchBreakersRequest, stream resiliencev1.ResilienceService_WatchBreakersServer) error {
	if err := checkName("prefix", req.GetPrefix(), false); err != nil {
		return err
	}
	return status.Error(codes.Unimplemented, "WatchBreakers is not implemented yet")
}

func (r *resilienceServer) ResetBreaker(ctx context.Context, req *resiliencev1.ResetBreakerRequest) (*resiliencev1.ResetBreakerResponse, error) {
	if err := checkName("breaker", req.GetBreaker(), true); err != nil {
		return nil, err
	}
	if _, err := parseResetState(req.GetState()); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.Unimplemented, "ResetBreaker is not implemented yet")
}
