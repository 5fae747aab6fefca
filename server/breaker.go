package server

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/config"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

func (r *resilienceServer) ReportOutcome(ctx context.Context, req *resiliencev1.ReportOutcomeRequest) (*resiliencev1.ReportOutcomeResponse, error) {
	a, err := parseReport(req)
	if err != nil {
		return nil, err
	}
	if err := r.validateReportExtras(req); err != nil {
		return nil, err
	}
	if a.breaker == "" { // only slots to release or feedback (parseReport)
		resp := &resiliencev1.ReportOutcomeResponse{}
		if err := r.reportExtras(ctx, req, resp); err != nil {
			return nil, err
		}
		return resp, nil
	}
	pol, _ := r.config().BreakerPolicy(a.breaker)
	o := breaker.OutcomeFailure
	if a.success {
		o = breaker.OutcomeSuccess
	}
	res, err := r.b.Breaker.Report(ctx, a.breaker, pol.Settings(), o, a.generation, a.permitID)
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	if res.Degraded {
		r.b.metrics.observeDegraded("breaker")
	}
	resp := &resiliencev1.ReportOutcomeResponse{
		State:    circuitState(res.State),
		Ignored:  res.Ignored,
		Degraded: res.Degraded,
	}
	if err := r.reportExtras(ctx, req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

func (r *resilienceServer) BreakerState(ctx context.Context, req *resiliencev1.BreakerStateRequest) (*resiliencev1.BreakerStateResponse, error) {
	if err := checkName("breaker", req.GetBreaker(), true); err != nil {
		return nil, err
	}
	cfg := r.config()
	pol, _ := cfg.BreakerPolicy(req.GetBreaker())
	st, err := r.b.Breaker.Status(ctx, req.GetBreaker(), pol.Settings())
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	return &resiliencev1.BreakerStateResponse{Status: breakerStatus(cfg, st)}, nil
}

func (r *resilienceServer) ListBreakers(ctx context.Context, req *resiliencev1.ListBreakersRequest) (*resiliencev1.ListBreakersResponse, error) {
	prefix, size, token, err := parseList(req)
	if err != nil {
		return nil, err
	}
	sts, next, err := r.b.Breaker.List(ctx, prefix, size, token)
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	cfg := r.config()
	resp := &resiliencev1.ListBreakersResponse{NextPageToken: next}
	for _, st := range sts {
		resp.Breakers = append(resp.Breakers, breakerStatus(cfg, st))
	}
	return resp, nil
}

func (r *resilienceServer) WatchBreakers(req *resiliencev1.WatchBreakersRequest, stream resiliencev1.ResilienceService_WatchBreakersServer) error {
	if err := checkName("prefix", req.GetPrefix(), false); err != nil {
		return err
	}
	// The watch ends with the caller, or when the server shuts down: a
	// stream never finishes on its own and would hold a graceful stop.
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	stop := context.AfterFunc(r.srv.streamsCtx, cancel)
	defer stop()
	events, err := r.b.Breaker.Watch(ctx, req.GetPrefix())
	if err != nil {
		return toStatus(ctx, err)
	}
	// Send the headers now, so the caller knows the watch is in place.
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	for e := range events {
		if e.Name == "" { // a resync marker: events may have been missed
			r.srv.log.WarnContext(ctx, "breaker events may have been missed (store reconnected)")
			continue
		}
		if err := stream.Send(&resiliencev1.WatchBreakersResponse{Event: &resiliencev1.BreakerEvent{
			Breaker:    e.Name,
			From:       circuitState(e.From),
			To:         circuitState(e.To),
			At:         timestamppb.New(e.At),
			Reason:     e.Reason,
			Generation: e.Generation,
		}}); err != nil {
			return err
		}
	}
	if r.srv.streamsCtx.Err() != nil && stream.Context().Err() == nil {
		return status.Error(codes.Unavailable, "server shutting down; watch again on another replica")
	}
	if ctx.Err() == nil {
		// The events ended with the caller still there: this watcher fell
		// too far behind (it is dropped rather than slow everyone) or the
		// store's subscription ended.
		return status.Error(codes.Unavailable, "breaker watch ended (fell behind or lost the store's events); watch again")
	}
	return toStatus(ctx, ctx.Err())
}

func (r *resilienceServer) ResetBreaker(ctx context.Context, req *resiliencev1.ResetBreakerRequest) (*resiliencev1.ResetBreakerResponse, error) {
	if err := checkName("breaker", req.GetBreaker(), true); err != nil {
		return nil, err
	}
	open, err := parseResetState(req.GetState())
	if err != nil {
		return nil, err
	}
	to := breaker.StateClosed
	if open {
		to = breaker.StateOpen
	}
	cfg := r.config()
	pol, _ := cfg.BreakerPolicy(req.GetBreaker())
	st, err := r.b.Breaker.Reset(ctx, req.GetBreaker(), pol.Settings(), to)
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	return &resiliencev1.ResetBreakerResponse{Status: breakerStatus(cfg, st)}, nil
}

// circuitStates maps each breaker state to the API's.
var circuitStates = [...]resiliencev1.CircuitState{
	breaker.StateClosed:   resiliencev1.CircuitState_CIRCUIT_STATE_CLOSED,
	breaker.StateOpen:     resiliencev1.CircuitState_CIRCUIT_STATE_OPEN,
	breaker.StateHalfOpen: resiliencev1.CircuitState_CIRCUIT_STATE_HALF_OPEN,
}

// circuitState maps a breaker state to the API's (UNSPECIFIED for a value
// outside the table).
func circuitState(s breaker.State) resiliencev1.CircuitState {
	if int(s) < len(circuitStates) {
		return circuitStates[s]
	}
	return resiliencev1.CircuitState_CIRCUIT_STATE_UNSPECIFIED
}

// breakerStatus maps a status to the API's, with the policy the
// configuration puts in force for the breaker now.
func breakerStatus(cfg *config.Config, st breaker.Status) *resiliencev1.BreakerStatus {
	pol, from := cfg.BreakerPolicy(st.Name)
	out := &resiliencev1.BreakerStatus{
		Name:                st.Name,
		State:               circuitState(st.State),
		ConsecutiveFailures: st.ConsecutiveFailures,
		Generation:          st.Generation,
		ProbesInFlight:      st.ProbesInFlight,
		Degraded:            st.Degraded,
		WindowCalls:         st.WindowCalls,
		WindowFailures:      st.WindowFailures,
		Policy: &resiliencev1.BreakerPolicy{
			Name:                 from,
			Mode:                 pol.Mode,
			FailureThreshold:     int64(pol.FailureThreshold),
			FailureRateThreshold: pol.FailureRateThreshold,
			Window:               durationpb.New(pol.Window.D()),
			MinimumCalls:         int64(pol.MinimumCalls),
			RecoveryTimeout:      durationpb.New(pol.RecoveryTimeout.D()),
			HalfOpenMaxCalls:     int64(pol.HalfOpenMaxCalls),
			SuccessThreshold:     int64(pol.SuccessThreshold),
			ProbeTimeout:         durationpb.New(pol.ProbeTimeout.D()),
		},
	}
	if !st.OpenedAt.IsZero() {
		out.OpenedAt = timestamppb.New(st.OpenedAt)
	}
	if !st.NextProbeAt.IsZero() && st.State != breaker.StateClosed {
		out.NextProbeAt = timestamppb.New(st.NextProbeAt)
	}
	return out
}
