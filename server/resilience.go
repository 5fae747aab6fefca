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
	buf := limits[:0]
	if a.count() > 1 {
		buf = make([]limiter.Request, 0, a.count())
	}
	areq := admissionRequest(cfg, a, &circuit, buf)
	if req.GetDryRun() {
		d, err := r.b.Admission.Peek(ctx, areq)
		if err != nil {
			return nil, toStatus(ctx, err)
		}
		return acquireResponse(a, &d, true), nil
	}
	d, err := r.b.Admission.Decide(ctx, areq)
	if d.Breaker.Degraded {
		r.b.metrics.observeDegraded("breaker")
	}
	if err != nil {
		r.b.metrics.observeAcquire("error", policyLabel(a, -1), "none", false)
		return nil, toStatus(ctx, err)
	}
	resp := acquireResponse(a, &d, false)
	shadow := "none"
	if d.ShadowReason != admission.ReasonAllowed {
		shadow = d.ShadowReason.String()
		r.srv.log.DebugContext(ctx, "a policy in shadow mode would have refused the call", "would_be", shadow, "breaker", a.breaker, "policy", policyLabel(a, -1))
	}
	r.b.metrics.observeAcquire(d.Reason.String(), policyLabel(a, d.LimitedBy), shadow, resp.GetDegraded())
	return resp, nil
}

// admissionRequest is the admission request of a validated Acquire, in
// storage of the caller's (its breaker in circuit, its limit appended to
// limits), so that it costs no allocation.
func admissionRequest(cfg *config.Config, a acquireArgs, circuit *admission.Circuit, limits []limiter.Request) admission.Request {
	req := admission.Request{MaxWait: a.maxWait}
	if a.breaker != "" {
		pol, _ := cfg.BreakerPolicy(a.breaker)
		*circuit = admission.Circuit{Name: a.breaker, Settings: pol.Settings(), Shadow: pol.Shadow}
		req.Circuit = circuit
	}
	if a.key != "" {
		limits = append(limits, limitRequest(a.key, a.limit, a.cost))
	}
	for _, l := range a.more {
		limits = append(limits, limitRequest(l.key, l.limit, l.cost))
	}
	if len(limits) > 0 {
		req.Limits = limits
	}
	return req
}

// limitRequest is the limiter's request for a call of cost on key under l.
func limitRequest(key string, l config.Limit, cost int64) limiter.Request {
	r := limiter.Request{
		Key:            key,
		Cost:           cost,
		OnStoreFailure: l.FailurePolicy(),
		Slots:          l.Slots(),
		Shadow:         l.Shadow,
	}
	if l.HasRate() {
		r.Limit, r.Lease = l.Limiter(), l.LeasePolicy()
	}
	return r
}

// acquireResponse maps the decision d on the call a to the API: the
// breaker's fields when a named a breaker, the limit's when the limiter
// answered, retry_after on a refusal, waited after a reservation.
func acquireResponse(a acquireArgs, d *admission.Decision, explain bool) *resiliencev1.AcquireResponse {
	resp := &resiliencev1.AcquireResponse{Allowed: d.Allowed, Reason: acquireReasonProto(d.Reason), Degraded: d.Degraded()}
	if a.breaker != "" {
		resp.BreakerState = circuitState(d.Breaker.State)
		resp.BreakerGeneration = d.Breaker.Generation
		resp.PermitId = d.Breaker.PermitID
	}
	if a.count() > 0 && d.Reason != admission.ReasonCircuitOpen {
		resp.Remaining = d.Limit.Remaining
		resp.ResetAfter = durationpb.New(d.Limit.ResetAfter)
		if explain || a.several() {
			resp.Limits = limitDecisions(a, d)
		}
		if d.LimitedBy >= 0 {
			resp.LimitedBy = a.at(d.LimitedBy).key
		}
	}
	if d.SlotID != "" {
		resp.SlotToken = encodeSlotToken(d.SlotID, a.slotKeys(), d.Degraded())
	}
	if d.ShadowReason != admission.ReasonAllowed {
		resp.ShadowReason = acquireReasonProto(d.ShadowReason)
	}
	if !d.Allowed {
		resp.RetryAfter = durationpb.New(d.RetryAfter)
	}
	if d.Waited > 0 {
		resp.Waited = durationpb.New(d.Waited)
	}
	return resp
}

// limitDecisions is every limit's answer in d, in a's order.
func limitDecisions(a acquireArgs, d *admission.Decision) []*resiliencev1.LimitDecision {
	n := a.count()
	out := make([]*resiliencev1.LimitDecision, 0, n)
	for i := range n {
		res := d.Limit
		if i < len(d.Limits) {
			res = d.Limits[i]
		}
		arg := a.at(i)
		lim := arg.limit
		ld := &resiliencev1.LimitDecision{
			Key:        arg.key,
			Allowed:    res.Allowed,
			Reason:     resiliencev1.AcquireReason_ACQUIRE_REASON_ALLOWED,
			Remaining:  res.Remaining,
			ResetAfter: durationpb.New(res.ResetAfter),
			InFlight:   res.InFlight,
			Shadow:     lim.Shadow,
		}
		if !res.Allowed {
			ld.Reason = acquireReasonProto(admission.LimitReason(res))
			ld.RetryAfter = durationpb.New(res.RetryAfter)
		}
		out = append(out, ld)
	}
	return out
}

// at is a's i-th limit (key first, then limits), the zero limitArg when
// there is none.
func (a *acquireArgs) at(i int) limitArg {
	if a.key != "" {
		if i == 0 {
			return limitArg{key: a.key, limit: a.limit, policy: a.policy, cost: a.cost}
		}
		i--
	}
	if i >= 0 && i < len(a.more) {
		return a.more[i]
	}
	return limitArg{}
}

// slotKeys are the keys of a's concurrency limits.
func (a *acquireArgs) slotKeys() []string {
	var keys []string
	for i := range a.count() {
		if arg := a.at(i); arg.limit.Slots().Enabled() {
			keys = append(keys, arg.key)
		}
	}
	return keys
}

// acquireReasons maps each admission reason to the API's.
var acquireReasons = [...]resiliencev1.AcquireReason{
	admission.ReasonAllowed:            resiliencev1.AcquireReason_ACQUIRE_REASON_ALLOWED,
	admission.ReasonRateLimited:        resiliencev1.AcquireReason_ACQUIRE_REASON_RATE_LIMITED,
	admission.ReasonCircuitOpen:        resiliencev1.AcquireReason_ACQUIRE_REASON_CIRCUIT_OPEN,
	admission.ReasonUpstreamThrottled:  resiliencev1.AcquireReason_ACQUIRE_REASON_UPSTREAM_THROTTLED,
	admission.ReasonConcurrencyLimited: resiliencev1.AcquireReason_ACQUIRE_REASON_CONCURRENCY_LIMITED,
}

// acquireReasonProto maps an admission reason to the API's (ALLOWED for a
// value outside the table).
func acquireReasonProto(r admission.Reason) resiliencev1.AcquireReason {
	if r >= 0 && int(r) < len(acquireReasons) {
		return acquireReasons[r]
	}
	return resiliencev1.AcquireReason_ACQUIRE_REASON_ALLOWED
}

// policyLabel names a limit of a for metrics (the i-th, the first when i
// is -1): its configured name, "inline" or "none"; never the caller's key.
func policyLabel(a acquireArgs, i int) string {
	if a.count() == 0 {
		return "none"
	}
	if p := a.at(max(i, 0)).policy; p != "" {
		return p
	}
	return "inline"
}
