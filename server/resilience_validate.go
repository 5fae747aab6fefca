package server

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/config"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/limiter"
)

// acquireArgs is a validated AcquireRequest with its limit resolved.
type acquireArgs struct {
	key     string
	limit   config.Limit // resolved from the request or the named policy; zero when key is empty
	policy  string       // the policy name, "" for an inline limit
	cost    int64
	maxWait time.Duration
	breaker string
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
	if a.key == "" && a.breaker == "" {
		return a, invalid("key", "is required unless breaker is set")
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
		return a, nil
	case req.GetLimit() != nil && a.policy != "":
		return a, invalid("limit", "must not be set together with policy")
	case req.GetLimit() == nil && a.policy == "":
		return a, invalid("limit", "either limit or policy is required with key")
	case a.policy != "":
		l, ok := cfg.Limits[a.policy]
		if !ok {
			return a, status.Errorf(codes.NotFound, "policy: no limit named %q in the server configuration", a.policy)
		}
		a.limit = l
	default:
		if a.limit, err = parseRateLimit(req.GetLimit()); err != nil {
			return a, err
		}
	}
	// The limiter's own rules for the call: cost within the burst, a
	// representable max_wait (the limit itself was checked when it was
	// built, by NewLimit here or when the configuration was loaded).
	if err := limiter.ValidateCall(a.limit.Limiter(), a.cost, a.maxWait); err != nil {
		return a, toStatus(context.Background(), err) // a validation error: no store involved
	}
	return a, nil
}

// parseRateLimit reads an inline limit and validates it with the limiter's
// rules, once (limiter.NewLimit). Inline limits fall back to a local bucket when the shared
// store is down, like configured limits by default.
func parseRateLimit(l *resiliencev1.RateLimit) (config.Limit, error) {
	w, err := duration("limit.time_window", l.GetTimeWindow())
	if err != nil {
		return config.Limit{}, err
	}
	lim, err := limiter.NewLimit(l.GetMaxCalls(), w, l.GetBurst())
	if err != nil {
		return config.Limit{}, toStatus(context.Background(), err) // a validation error: no store involved
	}
	return config.InlineLimit(lim), nil
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
