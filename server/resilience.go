package server

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"google.golang.org/protobuf/types/known/durationpb"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/limiter"
)

// resilienceServer implements ResilienceService.
type resilienceServer struct {
	resiliencev1.UnimplementedResilienceServiceServer
	srv *Server
	b   *Backends
}

func (r *resilienceServer) Acquire(ctx context.Context, req *resiliencev1.AcquireRequest) (*resiliencev1.AcquireResponse, error) {
	a, err := parseAcquire(r.srv.Config(), req)
	if err != nil {
		return nil, err
	}
	if a.key == "" {
		return nil, status.Error(codes.Unimplemented, "Acquire with only a breaker is not implemented yet")
	}
	// A caller whose deadline comes before the tokens would is told at
	// once: never reserve tokens for a wait the caller cannot sit out.
	maxWait := a.maxWait
	if dl, ok := ctx.Deadline(); ok && maxWait > 0 {
		maxWait = min(maxWait, time.Until(dl)-deadlineMargin)
		maxWait = max(maxWait, 0)
	}
	res, err := r.b.Limiter.Acquire(ctx, limiter.Request{
		Key:            a.key,
		Limit:          a.limit.Limiter(),
		Cost:           a.cost,
		MaxWait:        maxWait,
		OnStoreFailure: a.limit.FailurePolicy(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &resiliencev1.AcquireResponse{
		Allowed:    res.Allowed,
		Reason:     resiliencev1.AcquireReason_ACQUIRE_REASON_ALLOWED,
		Remaining:  res.Remaining,
		ResetAfter: durationpb.New(res.ResetAfter),
		Degraded:   res.Degraded,
	}
	if !res.Allowed {
		resp.Reason = resiliencev1.AcquireReason_ACQUIRE_REASON_RATE_LIMITED
		resp.RetryAfter = durationpb.New(res.RetryAfter)
		return resp, nil
	}
	if res.Wait > 0 {
		// The tokens are reserved for now+Wait: hold the call until then.
		t := time.NewTimer(res.Wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, toStatus(ctx.Err())
		}
		resp.Waited = durationpb.New(res.Wait)
	}
	return resp, nil
}

// deadlineMargin is kept between the end of a reservation's wait and the
// caller's deadline, for the answer to travel back.
const deadlineMargin = 5 * time.Millisecond

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
