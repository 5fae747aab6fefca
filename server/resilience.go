package server

import (
	"context"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/topdeck/resilience/admission"
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

// Acquire maps the request to one admission decision (package admission
// decides) and the decision back to the API.
func (r *resilienceServer) Acquire(ctx context.Context, req *resiliencev1.AcquireRequest) (*resiliencev1.AcquireResponse, error) {
	cfg := r.config()
	a, err := parseAcquire(cfg, req)
	if err != nil {
		return nil, err
	}
	var (
		circuit admission.Circuit
		limits  [1]limiter.Request
	)
	areq := admissionRequest(cfg, a, &circuit, limits[:0])
	if req.GetDryRun() {
		d, err := r.b.Admission.Peek(ctx, areq)
		if err != nil {
			return nil, toStatus(ctx, err)
		}
		return acquireResponse(a, &d), nil
	}
	d, err := r.b.Admission.Decide(ctx, areq)
	if d.Breaker.Degraded {
		r.b.metrics.observeDegraded("breaker")
	}
	if err != nil {
		r.b.metrics.observeAcquire("error", policyLabel(a), false)
		return nil, toStatus(ctx, err)
	}
	resp := acquireResponse(a, &d)
	r.b.metrics.observeAcquire(acquireReason(resp), policyLabel(a), resp.GetDegraded())
	return resp, nil
}

// admissionRequest is the admission request of a validated Acquire, in
// storage of the caller's (its breaker in circuit, its limit appended to
// limits), so that it costs no allocation.
func admissionRequest(cfg *config.Config, a acquireArgs, circuit *admission.Circuit, limits []limiter.Request) admission.Request {
	req := admission.Request{MaxWait: a.maxWait}
	if a.breaker != "" {
		pol, _ := cfg.BreakerPolicy(a.breaker)
		*circuit = admission.Circuit{Name: a.breaker, Settings: pol.Settings()}
		req.Circuit = circuit
	}
	if a.key != "" {
		req.Limits = append(limits, limiter.Request{
			Key:            a.key,
			Limit:          a.limit.Limiter(),
			Cost:           a.cost,
			OnStoreFailure: a.limit.FailurePolicy(),
			Lease:          a.limit.LeasePolicy(),
		})
	}
	return req
}

// acquireResponse maps the decision d on the call a to the API: the
// breaker's fields when a named a breaker, the limit's when the limiter
// answered, retry_after on a refusal, waited after a reservation.
func acquireResponse(a acquireArgs, d *admission.Decision) *resiliencev1.AcquireResponse {
	resp := &resiliencev1.AcquireResponse{Allowed: d.Allowed, Reason: acquireReasonProto(d.Reason), Degraded: d.Degraded()}
	if a.breaker != "" {
		resp.BreakerState = circuitState(d.Breaker.State)
		resp.BreakerGeneration = d.Breaker.Generation
		resp.PermitId = d.Breaker.PermitID
	}
	if a.key != "" && d.Reason != admission.ReasonCircuitOpen {
		resp.Remaining = d.Limit.Remaining
		resp.ResetAfter = durationpb.New(d.Limit.ResetAfter)
	}
	if !d.Allowed {
		resp.RetryAfter = durationpb.New(d.RetryAfter)
	}
	if d.Waited > 0 {
		resp.Waited = durationpb.New(d.Waited)
	}
	return resp
}

// acquireReasonProto maps an admission reason to the API's.
func acquireReasonProto(r admission.Reason) resiliencev1.AcquireReason {
	switch r {
	case admission.ReasonRateLimited:
		return resiliencev1.AcquireReason_ACQUIRE_REASON_RATE_LIMITED
	case admission.ReasonCircuitOpen:
		return resiliencev1.AcquireReason_ACQUIRE_REASON_CIRCUIT_OPEN
	}
	return resiliencev1.AcquireReason_ACQUIRE_REASON_ALLOWED
}

// acquireReason is the reason label of an Acquire answer.
func acquireReason(resp *resiliencev1.AcquireResponse) string {
	switch resp.GetReason() {
	case resiliencev1.AcquireReason_ACQUIRE_REASON_RATE_LIMITED:
		return "rate_limited"
	case resiliencev1.AcquireReason_ACQUIRE_REASON_CIRCUIT_OPEN:
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
