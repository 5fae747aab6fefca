package envoyrls

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/topdeck/resilience/internal/grpcerr"
	"github.com/topdeck/resilience/limiter"
)

// DegradedHeader is the gRPC response header set to "true" when at least one
// decision of the call was made by the limiter's local fallback because the
// shared store failed.
const DegradedHeader = "resilience-degraded"

// DefaultKeyPrefix is the default first part of every limiter key.
const DefaultKeyPrefix = "envoy"

// DefaultMaxDescriptors is the default largest number of descriptors one
// request may carry.
const DefaultMaxDescriptors = 64

// Server implements envoy.service.ratelimit.v3.RateLimitService on a
// limiter.Limiter. Create one with New; the zero value is not usable. A
// Server is safe for concurrent use; SetConfig swaps the configuration
// atomically while calls are in flight (each call uses one configuration
// throughout).
type Server struct {
	ratelimitv3.UnimplementedRateLimitServiceServer

	lim   *limiter.Limiter
	opts  options
	table atomic.Pointer[table]
}

var _ ratelimitv3.RateLimitServiceServer = (*Server)(nil)

// Option configures a Server.
type Option func(*options)

type options struct {
	policy         limiter.FailurePolicy
	globalShadow   bool
	prefix         string
	maxDescriptors int
}

// WithFailurePolicy sets what happens when the limiter's store fails
// (default limiter.AllowLocal: decide with a local bucket and mark the
// answer degraded; limiter.Deny: the call fails with UNAVAILABLE).
func WithFailurePolicy(p limiter.FailurePolicy) Option {
	return func(o *options) { o.policy = p }
}

// WithGlobalShadowMode, on, answers OK overall even when a descriptor is
// OVER_LIMIT (the statuses keep their codes), like the reference service's
// SHADOW_MODE setting and Config.ShadowMode (either one turns it on).
// Default off.
func WithGlobalShadowMode(on bool) Option {
	return func(o *options) { o.globalShadow = on }
}

// WithKeyPrefix sets the first part of every limiter key (default
// DefaultKeyPrefix). It must not contain '{' or '}'.
func WithKeyPrefix(prefix string) Option {
	return func(o *options) { o.prefix = prefix }
}

// WithMaxDescriptors bounds the descriptors of one request (default
// DefaultMaxDescriptors); n < 1 means the default.
func WithMaxDescriptors(n int) Option {
	return func(o *options) { o.maxDescriptors = n }
}

// New returns a Server deciding with l under cfg (nil: an empty
// configuration, every request OK). The error is cfg's validation error
// (matching ErrInvalidConfig) or a bad option.
func New(l *limiter.Limiter, cfg *Config, opts ...Option) (*Server, error) {
	o := options{prefix: DefaultKeyPrefix, maxDescriptors: DefaultMaxDescriptors}
	for _, opt := range opts {
		opt(&o)
	}
	if strings.ContainsAny(o.prefix, "{}") {
		return nil, fmt.Errorf("envoyrls: key prefix %q must not contain '{' or '}'", o.prefix)
	}
	if o.maxDescriptors < 1 {
		o.maxDescriptors = DefaultMaxDescriptors
	}
	s := &Server{lim: l, opts: o}
	if err := s.SetConfig(cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// SetConfig replaces the configuration (nil: empty), its settings included,
// for the calls that start after it returns; on error the current one stays.
// Buckets are keyed by domain and descriptor entries, not by limit, so a
// changed limit applies to the existing buckets from their next decision,
// which counts the tokens they used under the old limit (at most the new
// burst) and nothing more.
func (s *Server) SetConfig(cfg *Config) error {
	t, err := cfg.table()
	if err != nil {
		return err
	}
	s.table.Store(t)
	return nil
}

// Register registers s as the RateLimitService of r (a *grpc.Server).
func (s *Server) Register(r grpc.ServiceRegistrar) {
	ratelimitv3.RegisterRateLimitServiceServer(r, s)
}

// check is the decision for one request descriptor.
type check struct {
	rule *rule
	key  string
	cost uint64 // hits; 0 checks whether one hit would fit, taking nothing
	res  limiter.Result
	err  error
}

// hits is what descriptor d of req takes, as in the reference: the
// descriptor's own hits_addend when set (0 takes nothing), otherwise the
// request's, whose 0 means 1.
func hits(req *ratelimitv3.RateLimitRequest, d *commonv3.RateLimitDescriptor) uint64 {
	if h := d.GetHitsAddend(); h != nil {
		return h.GetValue()
	}
	return uint64(max(req.GetHitsAddend(), 1))
}

// ShouldRateLimit implements RateLimitServiceServer (see the package
// documentation for the semantics).
func (s *Server) ShouldRateLimit(ctx context.Context, req *ratelimitv3.RateLimitRequest) (*ratelimitv3.RateLimitResponse, error) {
	if err := s.validate(req); err != nil {
		return nil, err
	}
	t := s.table.Load()
	domain := req.GetDomain()
	descs := req.GetDescriptors()
	checks := make([]check, len(descs))
	var replaced map[string]bool
	_, known := t.domains[domain]
	for i, d := range descs {
		c := &checks[i]
		var shared []string
		if ov := d.GetLimit(); ov != nil && known {
			c.rule = overrideRule(ov)
		} else {
			c.rule, shared = t.lookup(domain, d.GetEntries())
		}
		if c.rule == nil {
			continue
		}
		c.cost = hits(req, d)
		c.key = bucketKey(s.opts.prefix, domain, d.GetEntries(), shared)
		for _, name := range c.rule.replaces {
			if replaced == nil {
				replaced = make(map[string]bool)
			}
			replaced[name] = true
		}
	}
	var pending []*check
	for i := range checks {
		c := &checks[i]
		// As in the reference, an unlimited limit is never replaced.
		if c.rule != nil && !c.rule.unlimited && c.rule.name != "" && replaced[c.rule.name] {
			c.rule = nil
		}
		if c.rule != nil && c.rule.needsStore(c.cost) {
			pending = append(pending, c)
		}
	}
	s.decide(ctx, pending)

	resp := &ratelimitv3.RateLimitResponse{
		Statuses: make([]*ratelimitv3.RateLimitResponse_DescriptorStatus, len(checks)),
	}
	degraded := false
	for i := range checks {
		c := &checks[i]
		if c.err != nil {
			return nil, storeError(ctx, c.err)
		}
		degraded = degraded || c.res.Degraded
		resp.Statuses[i] = c.status()
	}
	resp.OverallCode = overallCode(t, checks, resp.Statuses)
	if s.opts.globalShadow || t.shadow {
		resp.OverallCode = ratelimitv3.RateLimitResponse_OK
	}
	if t.headers != nil {
		resp.ResponseHeadersToAdd = t.headers.values(t, checks, resp.Statuses)
	}
	if t.dynamicMetadata {
		resp.DynamicMetadata = dynamicMetadata(req, checks, resp.Statuses)
	}
	if degraded {
		// Outside a gRPC handler (direct calls in tests) there is no stream
		// to carry the header; the answer is the same.
		_ = grpc.SetHeader(ctx, metadata.Pairs(DegradedHeader, "true"))
	}
	return resp, nil
}

// overallCode is the reference's rule: OVER_LIMIT when a descriptor that is
// not in quota mode is over its limit, or when every quota-mode descriptor
// is (and there is one). Unlimited descriptors count for neither.
func overallCode(t *table, checks []check, statuses []*ratelimitv3.RateLimitResponse_DescriptorStatus) ratelimitv3.RateLimitResponse_Code {
	quotas, quotasOver := 0, 0
	for i, st := range statuses {
		r := checks[i].rule
		if r != nil && r.unlimited {
			continue
		}
		quota := t.quota || (r != nil && r.quota)
		over := st.GetCode() == ratelimitv3.RateLimitResponse_OVER_LIMIT
		switch {
		case quota && over:
			quotas++
			quotasOver++
		case quota:
			quotas++
		case over:
			return ratelimitv3.RateLimitResponse_OVER_LIMIT
		}
	}
	if quotas > 0 && quotas == quotasOver {
		return ratelimitv3.RateLimitResponse_OVER_LIMIT
	}
	return ratelimitv3.RateLimitResponse_OK
}

// decide asks the limiter for every pending check, concurrently when there
// are several. Each call carries the check's limit, so a bucket used under
// another limit (a reload, an override) is decided under this one.
func (s *Server) decide(ctx context.Context, pending []*check) {
	acquire := func(c *check) {
		r := limiter.Request{
			Key:            c.key,
			Limit:          c.rule.limit,
			Cost:           int64(max(c.cost, 1)),
			OnStoreFailure: s.opts.policy,
		}
		if c.cost == 0 {
			c.res, c.err = s.lim.Peek(ctx, r)
			if c.err == nil && c.res.Allowed {
				// The peek answers as if one hit were taken; report
				// the bucket as it is (to the microsecond).
				c.res.Remaining++
				c.res.ResetAfter = max(c.res.ResetAfter-c.rule.window/time.Duration(c.rule.rpu), 0)
			}
		} else {
			c.res, c.err = s.lim.Acquire(ctx, r)
		}
	}
	if len(pending) == 1 {
		acquire(pending[0])
		return
	}
	var wg sync.WaitGroup
	for _, c := range pending {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acquire(c)
		}()
	}
	wg.Wait()
}

// needsStore reports whether a call of cost under r is decided by the
// limiter (otherwise the answer is known without it). A check of cost 0
// asks whether one hit would fit.
func (r *rule) needsStore(cost uint64) bool {
	return !r.unlimited && r.rpu > 0 && max(cost, 1) <= uint64(r.rpu)
}

// status builds c's descriptor status.
func (c *check) status() *ratelimitv3.RateLimitResponse_DescriptorStatus {
	r := c.rule
	switch {
	case r == nil:
		return &ratelimitv3.RateLimitResponse_DescriptorStatus{Code: ratelimitv3.RateLimitResponse_OK}
	case r.unlimited:
		return &ratelimitv3.RateLimitResponse_DescriptorStatus{
			Code:           ratelimitv3.RateLimitResponse_OK,
			LimitRemaining: math.MaxUint32,
		}
	}
	st := &ratelimitv3.RateLimitResponse_DescriptorStatus{CurrentLimit: r.proto()}
	if !r.needsStore(c.cost) {
		// requests_per_unit 0, or more hits than the bucket holds: never
		// admitted. The bucket is untouched, so "reset" is one window.
		st.Code = ratelimitv3.RateLimitResponse_OVER_LIMIT
		st.DurationUntilReset = durationpb.New(r.window)
	} else if c.res.Allowed {
		st.Code = ratelimitv3.RateLimitResponse_OK
		st.LimitRemaining = clampUint32(c.res.Remaining)
		st.DurationUntilReset = durationpb.New(c.res.ResetAfter)
	} else {
		st.Code = ratelimitv3.RateLimitResponse_OVER_LIMIT
		st.LimitRemaining = clampUint32(c.res.Remaining)
		st.DurationUntilReset = durationpb.New(c.res.RetryAfter)
	}
	if st.Code == ratelimitv3.RateLimitResponse_OVER_LIMIT && r.shadow {
		st.Code = ratelimitv3.RateLimitResponse_OK
	}
	return st
}

func (r *rule) proto() *ratelimitv3.RateLimitResponse_RateLimit {
	p := &ratelimitv3.RateLimitResponse_RateLimit{
		Name:            r.name,
		RequestsPerUnit: r.rpu,
		Unit:            ratelimitv3.RateLimitResponse_RateLimit_Unit(r.unit),
	}
	if r.mult > 0 {
		p.UnitMultiplier = wrapperspb.UInt32(r.mult)
	}
	return p
}

func clampUint32(n int64) uint32 {
	return uint32(min(max(n, 0), math.MaxUint32))
}

// overrideUnits maps envoy.type.v3.RateLimitUnit, the unit of a descriptor's
// limit override, to Unit.
var overrideUnits = map[typev3.RateLimitUnit]Unit{
	typev3.RateLimitUnit_SECOND: UnitSecond,
	typev3.RateLimitUnit_MINUTE: UnitMinute,
	typev3.RateLimitUnit_HOUR:   UnitHour,
	typev3.RateLimitUnit_DAY:    UnitDay,
	typev3.RateLimitUnit_MONTH:  UnitMonth,
	typev3.RateLimitUnit_YEAR:   UnitYear,
}

// overrideRule is the rule of a limit override that validate accepted.
func overrideRule(ov *commonv3.RateLimitDescriptor_RateLimitOverride) *rule {
	u := overrideUnits[ov.GetUnit()]
	mult := ov.GetUnitMultiplier().GetValue() // 0 when unset
	r := &rule{rpu: ov.GetRequestsPerUnit(), unit: u, mult: mult, window: u.Duration() * time.Duration(max(mult, 1))}
	if r.rpu > 0 {
		r.limit = limiter.Limit{MaxCalls: int64(r.rpu), Window: r.window, Burst: int64(r.rpu)}
	}
	return r
}

// validate checks req; the error is INVALID_ARGUMENT naming the field.
func (s *Server) validate(req *ratelimitv3.RateLimitRequest) error {
	bad := func(field, format string, args ...any) error {
		return status.Errorf(codes.InvalidArgument, "envoyrls: %s %s", field, fmt.Sprintf(format, args...))
	}
	if req.GetDomain() == "" {
		return bad("domain", "must not be empty")
	}
	descs := req.GetDescriptors()
	if len(descs) == 0 {
		return bad("descriptors", "must not be empty")
	}
	if len(descs) > s.opts.maxDescriptors {
		return bad("descriptors", "must hold at most %d descriptors, got %d", s.opts.maxDescriptors, len(descs))
	}
	for i, d := range descs {
		if d == nil || len(d.GetEntries()) == 0 {
			return bad(fmt.Sprintf("descriptors[%d].entries", i), "must not be empty")
		}
		for j, e := range d.GetEntries() {
			if e.GetKey() == "" {
				return bad(fmt.Sprintf("descriptors[%d].entries[%d].key", i, j), "must not be empty")
			}
		}
		if d.GetIsNegativeHits() {
			return bad(fmt.Sprintf("descriptors[%d].is_negative_hits", i), "is not supported: the limiter never gives tokens back")
		}
		if ov := d.GetLimit(); ov != nil {
			field := fmt.Sprintf("descriptors[%d].limit", i)
			u, ok := overrideUnits[ov.GetUnit()]
			if !ok {
				return bad(field+".unit", "must be SECOND, MINUTE, HOUR, DAY, MONTH or YEAR, got %v", ov.GetUnit())
			}
			if m := ov.GetUnitMultiplier(); m != nil {
				if m.GetValue() == 0 {
					return bad(field+".unit_multiplier", "must be > 0 when set")
				}
				if u.Duration() > time.Duration(math.MaxInt64)/time.Duration(m.GetValue()) {
					return bad(field+".unit_multiplier", "is too large for unit %s, got %d", u, m.GetValue())
				}
			}
			r := overrideRule(ov)
			if r.rpu > 0 {
				if err := r.limit.Validate(); err != nil {
					return bad(field+".requests_per_unit", "%d per %d %s cannot be an exact bucket: %v", r.rpu, max(r.mult, 1), u, err)
				}
			}
		}
	}
	return nil
}

// storeError maps a limiter error met while serving a call with ctx to a
// gRPC status, with the service's one table (internal/grpcerr, as the
// server's API): the caller's context ending is CANCELLED or
// DEADLINE_EXCEEDED, a store failure or the service's own store timeout
// UNAVAILABLE, and a limiter invalid-argument error INTERNAL (every limit
// comes from the configuration). Unlike the API, the message carries the
// store's own error, for the operators who read Envoy's logs.
func storeError(ctx context.Context, err error) error {
	st := status.Convert(grpcerr.Status(ctx, err, grpcerr.LimitsConfigured()))
	switch st.Code() {
	case codes.Unavailable:
		return status.Errorf(codes.Unavailable, "envoyrls: cannot decide: %v", err)
	case codes.Internal:
		return status.Errorf(codes.Internal, "envoyrls: %v", err)
	}
	return st.Err()
}
