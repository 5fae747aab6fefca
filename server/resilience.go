package server

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/config"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/limiter"
)

// resilienceServer implements ResilienceService.
type resilienceServer struct {
	resiliencev1.UnimplementedResilienceServiceServer
	srv    *Server
	b      *Backends
	tenant string // whose named limits and breaker policies apply (see config)
}

func (r *resilienceServer) Acquire(ctx context.Context, req *resiliencev1.AcquireRequest) (*resiliencev1.AcquireResponse, error) {
	cfg := r.config()
	a, err := parseAcquire(cfg, req)
	if err != nil {
		return nil, err
	}
	if req.GetDryRun() {
		return r.peek(ctx, cfg, a)
	}
	resp, err := r.decide(ctx, cfg, a)
	r.b.metrics.observeAcquire(acquireReason(resp, err), policyLabel(a), resp.GetDegraded())
	return resp, err
}

// acquireReason is the reason label of an Acquire answer.
func acquireReason(resp *resiliencev1.AcquireResponse, err error) string {
	switch {
	case err != nil:
		return "error"
	case resp.GetReason() == resiliencev1.AcquireReason_ACQUIRE_REASON_RATE_LIMITED:
		return "rate_limited"
	case resp.GetReason() == resiliencev1.AcquireReason_ACQUIRE_REASON_CIRCUIT_OPEN:
		return "circuit_open"
	}
	return "allowed"
}

// policyLabel names the limit of a for metrics: its configured name,
// "inline" or "none"; never the caller's key.
func policyLabel(a acquireArgs) string {
	switch {
	case a.policy != "":
		return a.policy
	case a.key != "":
		return "inline"
	}
	return "none"
}

// decide makes the Acquire decision for validated arguments.
func (r *resilienceServer) decide(ctx context.Context, cfg *config.Config, a acquireArgs) (*resiliencev1.AcquireResponse, error) {
	var err error
	resp := &resiliencev1.AcquireResponse{Allowed: true, Reason: resiliencev1.AcquireReason_ACQUIRE_REASON_ALLOWED}

	// The breaker first: a call refused by an open breaker takes no tokens.
	var adm breaker.Admission
	if a.breaker != "" {
		if adm, err = r.b.admitBreaker(ctx, cfg, a.breaker); err != nil {
			return nil, toStatus(ctx, err)
		}
		resp.BreakerState = circuitState(adm.State)
		resp.BreakerGeneration = adm.Generation
		resp.Degraded = adm.Degraded
		if adm.Degraded {
			r.b.metrics.observeDegraded("breaker")
		}
		if !adm.Allowed {
			resp.Allowed = false
			resp.Reason = resiliencev1.AcquireReason_ACQUIRE_REASON_CIRCUIT_OPEN
			resp.RetryAfter = breakerRetry(adm)
			return resp, nil
		}
		resp.PermitId = adm.PermitID
	}
	if a.key == "" {
		return resp, nil
	}
	// A caller whose deadline comes before the tokens would is told at
	// once: never reserve tokens for a wait the caller cannot sit out.
	maxWait := a.maxWait
	if dl, ok := ctx.Deadline(); ok && maxWait > 0 {
		maxWait = min(maxWait, time.Until(dl)-deadlineMargin)
		maxWait = max(maxWait, 0)
	}
	req := limiter.Request{
		Key:            a.key,
		Limit:          a.limit.Limiter(),
		Cost:           a.cost,
		MaxWait:        maxWait,
		OnStoreFailure: a.limit.FailurePolicy(),
	}
	res, err := r.b.Limiter.Acquire(ctx, req)
	if err != nil {
		r.b.releaseProbe(ctx, a.breaker, adm.PermitID)
		return nil, toStatus(ctx, err)
	}
	resp.Remaining = res.Remaining
	resp.ResetAfter = durationpb.New(res.ResetAfter)
	resp.Degraded = resp.Degraded || res.Degraded
	if !res.Allowed {
		// Refused by the limiter: not an upstream failure, and a probe
		// lease the call will not use goes back at once.
		r.b.releaseProbe(ctx, a.breaker, adm.PermitID)
		resp.Allowed = false
		resp.PermitId = ""
		resp.Reason = resiliencev1.AcquireReason_ACQUIRE_REASON_RATE_LIMITED
		resp.RetryAfter = durationpb.New(res.RetryAfter)
		return resp, nil
	}
	if res.Wait > 0 {
		// The tokens are reserved for now+Wait: hold the call until then.
		// A caller who gives up first gets them back, when nothing was
		// taken after them.
		if err := r.b.Limiter.Wait(ctx, req, res); err != nil {
			r.b.releaseProbe(ctx, a.breaker, adm.PermitID)
			return nil, toStatus(ctx, err)
		}
		resp.Waited = durationpb.New(res.Wait)
	}
	return resp, nil
}

// deadlineMargin is kept between the end of a reservation's wait and the
// caller's deadline, for the answer to travel back.
const deadlineMargin = 5 * time.Millisecond

// peek answers a dry-run Acquire: what the breaker and the limiter would
// say now, changing nothing.
func (r *resilienceServer) peek(ctx context.Context, cfg *config.Config, a acquireArgs) (*resiliencev1.AcquireResponse, error) {
	resp := &resiliencev1.AcquireResponse{Allowed: true, Reason: resiliencev1.AcquireReason_ACQUIRE_REASON_ALLOWED}
	if a.breaker != "" {
		pol, _ := cfg.BreakerPolicy(a.breaker)
		st, err := r.b.Breaker.Status(ctx, a.breaker, pol.Settings())
		if err != nil {
			return nil, toStatus(ctx, err)
		}
		resp.BreakerState = circuitState(st.State)
		resp.BreakerGeneration = st.Generation
		resp.Degraded = st.Degraded
		if wait := wouldWait(st, time.Now()); wait > 0 {
			resp.Allowed = false
			resp.Reason = resiliencev1.AcquireReason_ACQUIRE_REASON_CIRCUIT_OPEN
			resp.RetryAfter = durationpb.New(wait)
			return resp, nil
		}
	}
	if a.key == "" {
		return resp, nil
	}
	res, err := r.b.Limiter.Peek(ctx, limiter.Request{
		Key: a.key, Limit: a.limit.Limiter(), Cost: a.cost, OnStoreFailure: a.limit.FailurePolicy(),
	})
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	resp.Remaining = res.Remaining
	resp.ResetAfter = durationpb.New(res.ResetAfter)
	resp.Degraded = resp.Degraded || res.Degraded
	if !res.Allowed {
		resp.Allowed = false
		resp.Reason = resiliencev1.AcquireReason_ACQUIRE_REASON_RATE_LIMITED
		resp.RetryAfter = durationpb.New(res.RetryAfter)
	}
	return resp, nil
}

// wouldWait is how long a breaker in status st would refuse a call at now:
// 0 when it would admit one (CLOSED, or a free probe slot).
func wouldWait(st breaker.Status, now time.Time) time.Duration {
	switch st.State {
	case breaker.StateOpen:
		return max(st.NextProbeAt.Sub(now), 0)
	case breaker.StateHalfOpen:
		if st.ProbesInFlight < int64(st.Settings.HalfOpenMaxCalls) {
			return 0
		}
		return max(st.NextProbeAt.Sub(now), time.Millisecond)
	}
	return 0
}
