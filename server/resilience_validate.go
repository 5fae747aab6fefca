package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/config"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/limiter"
)

// acquireArgs is a validated AcquireRequest with its limits resolved.
type acquireArgs struct {
	key     string
	limit   config.Limit // resolved from the request or the named policy; zero when key is empty
	policy  string       // the policy name, "" for an inline limit
	cost    int64
	maxWait time.Duration
	breaker string
	// more are the request's `limits`, validated (nil when it has none).
	more []limitArg
}

// limitArg is one validated LimitRequest.
type limitArg struct {
	key    string
	limit  config.Limit
	policy string
	cost   int64
}

// several reports whether a is decided by the all-or-nothing path: more
// than one limit, or a concurrency limit.
func (a *acquireArgs) several() bool {
	if len(a.more) > 0 || a.limit.Slots().Enabled() {
		return true
	}
	return false
}

// count is the number of limits a names.
func (a *acquireArgs) count() int {
	n := len(a.more)
	if a.key != "" {
		n++
	}
	return n
}

// parseLimits validates req.limits into a.more: at most
// limiter.MaxLimitsPerCall limits with key, keys distinct.
func parseLimits(cfg *config.Config, req *resiliencev1.AcquireRequest, a *acquireArgs) error {
	ls := req.GetLimits()
	if len(ls) == 0 {
		return nil
	}
	n := len(ls)
	if a.key != "" {
		n++
	}
	if n > limiter.MaxLimitsPerCall {
		return invalid("limits", "names %d limits with key, at most %d per call", n, limiter.MaxLimitsPerCall)
	}
	a.more = make([]limitArg, 0, len(ls))
	for i, l := range ls {
		prefix := fmt.Sprintf("limits[%d].", i)
		la := limitArg{key: l.GetKey(), policy: l.GetPolicy()}
		if err := checkName(prefix+"key", la.key, true); err != nil {
			return err
		}
		if la.key == a.key {
			return invalid(prefix+"key", "%q is also the request's key: keys must be distinct in one call", la.key)
		}
		for _, prev := range a.more {
			if prev.key == la.key {
				return invalid(prefix+"key", "%q is named twice: keys must be distinct in one call", la.key)
			}
		}
		if err := checkName(prefix+"policy", la.policy, false); err != nil {
			return err
		}
		if l.GetCost() < 0 {
			return invalid(prefix+"cost", "must not be negative, got %d", l.GetCost())
		}
		la.cost = max(l.GetCost(), 1)
		var err error
		if la.limit, err = resolveLimit(cfg, prefix, l.GetLimit(), la.policy); err != nil {
			return err
		}
		if err := validateCall(prefix, la.limit, la.cost, a.maxWait); err != nil {
			return err
		}
		a.more = append(a.more, la)
	}
	return nil
}

// resolveLimit is the limit of an inline RateLimit or a policy name, exactly
// one of which is set; prefix names the fields ("" or "limits[i].").
func resolveLimit(cfg *config.Config, prefix string, l *resiliencev1.RateLimit, policy string) (config.Limit, error) {
	switch {
	case l != nil && policy != "":
		return config.Limit{}, invalid(prefix+"limit", "must not be set together with policy")
	case l == nil && policy == "":
		return config.Limit{}, invalid(prefix+"limit", "either limit or policy is required with key")
	case policy != "":
		lim, ok := cfg.Limits[policy]
		if !ok {
			return config.Limit{}, status.Errorf(codes.NotFound, "%spolicy: no limit named %q in the server configuration", prefix, policy)
		}
		return lim, nil
	}
	return parseLimit(prefix, l)
}

// validateCall applies the limiter's rules for a call on lim (cost within
// the burst, a representable max_wait), naming fields under prefix.
func validateCall(prefix string, lim config.Limit, cost int64, maxWait time.Duration) error {
	if !lim.HasRate() {
		return nil
	}
	if err := limiter.ValidateCall(lim.Limiter(), cost, maxWait); err != nil {
		return prefixed(prefix, err)
	}
	return nil
}

// prefixed is err, a limiter validation error, as INVALID_ARGUMENT naming
// prefix + its field.
func prefixed(prefix string, err error) error {
	var ie *limiter.InvalidArgumentError
	if prefix != "" && errors.As(err, &ie) {
		return invalid(prefix+ie.Field, "%s", ie.Reason)
	}
	return toStatus(context.Background(), err) // a validation error: no store involved
}

// parseAcquire validates req against cfg. Errors are INVALID_ARGUMENT naming
// the field, or NOT_FOUND for an unknown policy.
func parseAcquire(cfg *config.Config, req *resiliencev1.AcquireRequest) (acquireArgs, error) {
	a := acquireArgs{key: req.GetKey(), policy: req.GetPolicy(), breaker: req.GetBreaker()}
	if err := checkName("key", a.key, false); err != nil {
		return a, err
	}
	if err := checkName("breaker", a.breaker, false); err != nil {
		return a, err
	}
	if a.key == "" && a.breaker == "" && len(req.GetLimits()) == 0 {
		return a, invalid("key", "is required unless breaker or limits is set")
	}
	if err := checkName("policy", a.policy, false); err != nil {
		return a, err
	}
	if req.GetCost() < 0 {
		return a, invalid("cost", "must not be negative, got %d", req.GetCost())
	}
	a.cost = max(req.GetCost(), 1)
	var err error
	if a.maxWait, err = duration("max_wait", req.GetMaxWait()); err != nil {
		return a, err
	}
	switch {
	case a.key == "" && (req.GetLimit() != nil || a.policy != ""):
		return a, invalid("key", "is required when limit or policy is set")
	case a.key == "":
		return a, parseLimits(cfg, req, &a)
	}
	if a.limit, err = resolveLimit(cfg, "", req.GetLimit(), a.policy); err != nil {
		return a, err
	}
	// The limiter's own rules for the call: cost within the burst, a
	// representable max_wait (the limit itself was checked when it was
	// built, by NewLimit here or when the configuration was loaded).
	if err := validateCall("", a.limit, a.cost, a.maxWait); err != nil {
		return a, err
	}
	return a, parseLimits(cfg, req, &a)
}

// parseLimit reads an inline limit and validates it with the limiter's
// rules, once (limiter.NewLimit, limiter.Slots.Validate), naming fields
// under prefix. A concurrency limit alone has max_calls, time_window and
// burst unset. Inline limits fall back to a local bucket when the shared
// store is down, like configured limits by default; they are never in
// shadow mode (a flag the caller could flip).
func parseLimit(prefix string, l *resiliencev1.RateLimit) (config.Limit, error) {
	w, err := duration(prefix+"limit.time_window", l.GetTimeWindow())
	if err != nil {
		return config.Limit{}, err
	}
	lease, err := duration(prefix+"limit.in_flight_lease", l.GetInFlightLease())
	if err != nil {
		return config.Limit{}, err
	}
	slots := limiter.Slots{MaxInFlight: l.GetMaxInFlight(), Lease: lease}
	if slots.Enabled() {
		if err := slots.Validate(); err != nil {
			return config.Limit{}, prefixed(prefix+"limit.", err)
		}
	}
	out := config.Limit{OnStoreFailure: config.AllowLocal}
	if !slots.Enabled() || l.GetMaxCalls() != 0 || l.GetTimeWindow() != nil || l.GetBurst() != 0 {
		lim, err := limiter.NewLimit(l.GetMaxCalls(), w, l.GetBurst())
		if err != nil {
			return config.Limit{}, prefixed(prefix+"limit.", err)
		}
		out = config.InlineLimit(lim)
	}
	out.MaxInFlight, out.InFlightLease = slots.MaxInFlight, config.Duration(slots.Lease)
	return out, nil
}

// reportArgs is a validated ReportOutcomeRequest.
type reportArgs struct {
	breaker    string
	success    bool
	latency    time.Duration
	permitID   string
	generation uint64
}

func parseReport(req *resiliencev1.ReportOutcomeRequest) (reportArgs, error) {
	a := reportArgs{breaker: req.GetBreaker(), permitID: req.GetPermitId(), generation: req.GetBreakerGeneration()}
	extras := req.GetSlotToken() != "" || len(req.GetUpstream()) > 0
	if a.breaker == "" && extras {
		if a.permitID != "" {
			return a, invalid("permit_id", "needs breaker")
		}
		return a, nil // only slots to release or feedback to pass on
	}
	if err := checkName("breaker", a.breaker, true); err != nil {
		return a, err
	}
	switch req.GetOutcome() {
	case resiliencev1.Outcome_OUTCOME_SUCCESS:
		a.success = true
	case resiliencev1.Outcome_OUTCOME_FAILURE:
	case resiliencev1.Outcome_OUTCOME_UNSPECIFIED:
		return a, invalid("outcome", "is required (OUTCOME_SUCCESS or OUTCOME_FAILURE)")
	default:
		return a, invalid("outcome", "unknown value %d", req.GetOutcome())
	}
	if err := checkName("permit_id", a.permitID, false); err != nil {
		return a, err
	}
	if err := breaker.ValidatePermitID(a.permitID); a.permitID != "" && err != nil {
		return a, toStatus(context.Background(), err) // a validation error: no store involved
	}
	// breaker_generation needs no check: any value is either one this
	// service issued or stale, and a stale outcome is ignored (a degraded
	// answer's generations have the top bit set; caller input never routes
	// a report to the local fallback while the store answers).
	var err error
	a.latency, err = duration("latency", req.GetLatency())
	return a, err
}

// parseResetState validates the state a breaker is forced into. Unspecified
// means CLOSED.
func parseResetState(s resiliencev1.CircuitState) (open bool, err error) {
	switch s {
	case resiliencev1.CircuitState_CIRCUIT_STATE_UNSPECIFIED, resiliencev1.CircuitState_CIRCUIT_STATE_CLOSED:
		return false, nil
	case resiliencev1.CircuitState_CIRCUIT_STATE_OPEN:
		return true, nil
	case resiliencev1.CircuitState_CIRCUIT_STATE_HALF_OPEN:
		return false, invalid("state", "a breaker can be reset to CLOSED or OPEN, not HALF_OPEN")
	default:
		return false, invalid("state", "unknown value %d", s)
	}
}

// Page sizes of ListBreakers: the breaker's. The API refuses a page_size
// above the maximum (INVALID_ARGUMENT) where breaker.NormalizePageSize, for
// Go callers, caps it.
const (
	defaultPageSize = breaker.DefaultPageSize
	maxPageSize     = breaker.MaxPageSize
)

func parseList(req *resiliencev1.ListBreakersRequest) (prefix string, size int, token string, err error) {
	if err := checkName("prefix", req.GetPrefix(), false); err != nil {
		return "", 0, "", err
	}
	switch n := req.GetPageSize(); {
	case n < 0:
		return "", 0, "", invalid("page_size", "must not be negative, got %d", n)
	case n == 0:
		size = defaultPageSize
	case n > maxPageSize:
		return "", 0, "", invalid("page_size", "must be at most %d, got %d", maxPageSize, n)
	default:
		size = int(n)
	}
	if len(req.GetPageToken()) > 4*MaxKeyBytes {
		return "", 0, "", invalid("page_token", "is not a token this server issued")
	}
	return req.GetPrefix(), size, req.GetPageToken(), nil
}
