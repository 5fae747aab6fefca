package envoyrls_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/topdeck/resilience/internal/clocktest"
	"github.com/topdeck/resilience/internal/testkit"

	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/topdeck/resilience/envoyrls"
	"github.com/topdeck/resilience/limiter"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// clock is a settable clock for the memory limiter.
type clock = clocktest.Clock

func newClock() *clock { return clocktest.New(time.Unix(1_700_000_000, 0)) }

func memoryLimiter(c *clock) *limiter.Limiter {
	return limiter.New(limiter.NewMemoryStore(limiter.WithMemoryClock(c.Now)), limiter.WithClock(c.Now))
}

// serve runs srv on an in-memory gRPC connection and returns a client.
func serve(t *testing.T, srv *envoyrls.Server) ratelimitv3.RateLimitServiceClient {
	t.Helper()
	gs := grpc.NewServer()
	srv.Register(gs)
	return ratelimitv3.NewRateLimitServiceClient(testkit.ServeBufconn(t, gs))
}

func newServer(t *testing.T, l *limiter.Limiter, yamlCfg string, opts ...envoyrls.Option) (*envoyrls.Server, ratelimitv3.RateLimitServiceClient) {
	t.Helper()
	srv := mustNew(t, l, yamlCfg, opts...)
	return srv, serve(t, srv)
}

// mustNew returns a server on l with the configuration yamlCfg, failing tb
// if it does not parse or the server cannot be built.
func mustNew(tb testing.TB, l *limiter.Limiter, yamlCfg string, opts ...envoyrls.Option) *envoyrls.Server {
	tb.Helper()
	cfg, err := envoyrls.Parse([]byte(yamlCfg))
	if err != nil {
		tb.Fatalf("Parse: %v", err)
	}
	srv, err := envoyrls.New(l, cfg, opts...)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return srv
}

// memoryServer is newServer on a memory limiter reading a new clock; it
// returns the clock and the client.
func memoryServer(t *testing.T, yamlCfg string, opts ...envoyrls.Option) (*clock, ratelimitv3.RateLimitServiceClient) {
	t.Helper()
	clk := newClock()
	_, c := newServer(t, memoryLimiter(clk), yamlCfg, opts...)
	return clk, c
}

// reloadPerIP gives srv perIPConfig with its first old replaced by new.
func reloadPerIP(t *testing.T, srv *envoyrls.Server, old, new string) {
	t.Helper()
	cfg, err := envoyrls.Parse([]byte(strings.Replace(perIPConfig, old, new, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
}

// desc builds a descriptor from key, value pairs.
func desc(kv ...string) *commonv3.RateLimitDescriptor {
	d := &commonv3.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &commonv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

func req(domain string, hits uint32, ds ...*commonv3.RateLimitDescriptor) *ratelimitv3.RateLimitRequest {
	return &ratelimitv3.RateLimitRequest{Domain: domain, Descriptors: ds, HitsAddend: hits}
}

func call(t *testing.T, c ratelimitv3.RateLimitServiceClient, r *ratelimitv3.RateLimitRequest, opts ...grpc.CallOption) *ratelimitv3.RateLimitResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.ShouldRateLimit(ctx, r, opts...)
	if err != nil {
		t.Fatalf("ShouldRateLimit(%v): %v", prototext.Format(r), err)
	}
	return resp
}

const (
	ok   = ratelimitv3.RateLimitResponse_OK
	over = ratelimitv3.RateLimitResponse_OVER_LIMIT
)

func limit(rpu uint32, unit ratelimitv3.RateLimitResponse_RateLimit_Unit, name string) *ratelimitv3.RateLimitResponse_RateLimit {
	return &ratelimitv3.RateLimitResponse_RateLimit{RequestsPerUnit: rpu, Unit: unit, Name: name}
}

func st(code ratelimitv3.RateLimitResponse_Code, cur *ratelimitv3.RateLimitResponse_RateLimit, remaining uint32, reset time.Duration) *ratelimitv3.RateLimitResponse_DescriptorStatus {
	s := &ratelimitv3.RateLimitResponse_DescriptorStatus{Code: code, CurrentLimit: cur, LimitRemaining: remaining}
	if cur != nil {
		s.DurationUntilReset = durationpb.New(reset)
	}
	return s
}

func wantResponse(t *testing.T, step string, got *ratelimitv3.RateLimitResponse, overall ratelimitv3.RateLimitResponse_Code, statuses ...*ratelimitv3.RateLimitResponse_DescriptorStatus) {
	t.Helper()
	want := &ratelimitv3.RateLimitResponse{OverallCode: overall, Statuses: statuses}
	if !proto.Equal(got, want) {
		t.Errorf("%s:\ngot  %s\nwant %s", step, prototext.Format(got), prototext.Format(want))
	}
}

const perIPConfig = `
- domain: edge
  descriptors:
    - key: remote_address
      rate_limit: {unit: minute, requests_per_unit: 3, name: per_ip}
    - key: remote_address
      value: 50.0.0.5
      rate_limit: {unit: second, requests_per_unit: 0}
    - key: ldap
      rate_limit: {unlimited: true}
    - key: path
      value: /health
`

// GCRA, 3 per minute, burst 3: one token every 20s; a denied request
// consumes nothing.
func TestShouldRateLimitBasics(t *testing.T) {
	clk, c := memoryServer(t, perIPConfig)
	perIP := limit(3, ratelimitv3.RateLimitResponse_RateLimit_MINUTE, "per_ip")
	a := desc("remote_address", "10.0.0.1")

	steps := []struct {
		name    string
		advance time.Duration
		r       *ratelimitv3.RateLimitRequest
		overall ratelimitv3.RateLimitResponse_Code
		want    *ratelimitv3.RateLimitResponse_DescriptorStatus
	}{
		{"first", 0, req("edge", 0, a), ok, st(ok, perIP, 2, 20*time.Second)},
		{"second", 0, req("edge", 0, a), ok, st(ok, perIP, 1, 40*time.Second)},
		{"third", 0, req("edge", 1, a), ok, st(ok, perIP, 0, 60*time.Second)},
		{"fourth is over, retry in 20s", 0, req("edge", 0, a), over, st(over, perIP, 0, 20*time.Second)},
		{"still over 5s later", 5 * time.Second, req("edge", 0, a), over, st(over, perIP, 0, 15*time.Second)},
		{"one token back after 20s", 15 * time.Second, req("edge", 0, a), ok, st(ok, perIP, 0, 60*time.Second)},
		{"other address has its own bucket", 0, req("edge", 0, desc("remote_address", "10.0.0.2")), ok, st(ok, perIP, 2, 20*time.Second)},
		{"hits_addend 2 with 1 token left is over", 20 * time.Second, req("edge", 2, a), over, st(over, perIP, 1, 20*time.Second)},
		{"hits_addend 2 fits 20s later", 20 * time.Second, req("edge", 2, a), ok, st(ok, perIP, 0, 60*time.Second)},
		{"hits above requests_per_unit never fit", 60 * time.Second, req("edge", 4, a), over, st(over, perIP, 0, time.Minute)},
		{"and consumed nothing", 0, req("edge", 3, a), ok, st(ok, perIP, 0, 60*time.Second)},
		{"requests_per_unit 0 blocks", 0, req("edge", 0, desc("remote_address", "50.0.0.5")), over,
			st(over, limit(0, ratelimitv3.RateLimitResponse_RateLimit_SECOND, ""), 0, time.Second)},
		{"unlimited", 0, req("edge", 0, desc("ldap", "x")), ok,
			&ratelimitv3.RateLimitResponse_DescriptorStatus{Code: ok, LimitRemaining: math.MaxUint32}},
		{"descriptor without limit", 0, req("edge", 0, desc("path", "/health")), ok, st(ok, nil, 0, 0)},
		{"no matching descriptor", 0, req("edge", 0, desc("user", "bob")), ok, st(ok, nil, 0, 0)},
		{"unknown domain", 0, req("nowhere", 0, a), ok, st(ok, nil, 0, 0)},
	}
	for _, s := range steps {
		clk.Advance(s.advance)
		wantResponse(t, s.name, call(t, c, s.r), s.overall, s.want)
	}
}

// A descriptor's own hits_addend overrides the request's; an explicit 0
// checks without charging (Envoy's hits_addend: {number: 0}), as in the
// reference.
func TestHitsAddendOverride(t *testing.T) {
	clk, c := memoryServer(t, perIPConfig)
	perIP := limit(3, ratelimitv3.RateLimitResponse_RateLimit_MINUTE, "per_ip")
	d := desc("remote_address", "10.0.0.1")
	d.HitsAddend = wrapperspb.UInt64(2) // overrides the request's 1
	wantResponse(t, "descriptor hits_addend", call(t, c, req("edge", 1, d)), ok, st(ok, perIP, 1, 40*time.Second))
	d.HitsAddend = wrapperspb.UInt64(0) // check only: the bucket as it is
	for i := range 3 {
		wantResponse(t, fmt.Sprintf("descriptor hits_addend 0, check %d", i), call(t, c, req("edge", 3, d)), ok, st(ok, perIP, 1, 40*time.Second))
	}
	d.HitsAddend = nil // the request's 0 means 1
	wantResponse(t, "request hits_addend 0", call(t, c, req("edge", 0, d)), ok, st(ok, perIP, 0, 60*time.Second))
	d.HitsAddend = wrapperspb.UInt64(0) // check only, nothing left: over, retry when one hit fits
	wantResponse(t, "check an empty bucket", call(t, c, req("edge", 0, d)), over, st(over, perIP, 0, 20*time.Second))
	d.HitsAddend = wrapperspb.UInt64(1 << 40)
	wantResponse(t, "huge hits_addend", call(t, c, req("edge", 0, d)), over, st(over, perIP, 0, time.Minute))
	clk.Advance(time.Minute)
	d.HitsAddend = wrapperspb.UInt64(0)
	wantResponse(t, "check a full bucket", call(t, c, req("edge", 0, d)), ok, st(ok, perIP, 3, 0))
	blocked := desc("remote_address", "50.0.0.5")
	blocked.HitsAddend = wrapperspb.UInt64(0)
	wantResponse(t, "check a blocked descriptor", call(t, c, req("edge", 0, blocked)), over,
		st(over, limit(0, ratelimitv3.RateLimitResponse_RateLimit_SECOND, ""), 0, time.Second))
}

func TestMultipleDescriptors(t *testing.T) {
	_, c := memoryServer(t, `
- domain: messaging
  descriptors:
    - key: message_type
      value: marketing
      descriptors:
        - key: to_number
          rate_limit: {unit: day, requests_per_unit: 1}
    - key: to_number
      rate_limit: {unit: day, requests_per_unit: 5}
`)
	marketing := limit(1, ratelimitv3.RateLimitResponse_RateLimit_DAY, "")
	perNumber := limit(5, ratelimitv3.RateLimitResponse_RateLimit_DAY, "")
	r := req("messaging", 0, desc("message_type", "marketing", "to_number", "2061111111"), desc("to_number", "2061111111"))
	day := 24 * time.Hour
	wantResponse(t, "both within limits", call(t, c, r), ok,
		st(ok, marketing, 0, day), st(ok, perNumber, 4, day/5))
	// The marketing limit is over; the per-number bucket is still charged
	// (descriptors are decided independently, as in the reference).
	wantResponse(t, "marketing over", call(t, c, r), over,
		st(over, marketing, 0, day), st(ok, perNumber, 3, 2*day/5))
	wantResponse(t, "per-number alone", call(t, c, req("messaging", 0, desc("to_number", "2061111111"))), ok,
		st(ok, perNumber, 2, 3*day/5))
}

func TestShadowMode(t *testing.T) {
	clk := newClock()
	cfg := `
- domain: example6
  descriptors:
    - key: service
      descriptors:
        - key: user
          value: user-a
          rate_limit: {requests_per_unit: 1, unit: second}
          shadow_mode: true
        - key: user
          value: user-b
          rate_limit: {requests_per_unit: 1, unit: second}
`
	_, c := newServer(t, memoryLimiter(clk), cfg)
	lim := limit(1, ratelimitv3.RateLimitResponse_RateLimit_SECOND, "")
	a := desc("service", "auth", "user", "user-a")
	b := desc("service", "auth", "user", "user-b")
	wantResponse(t, "first", call(t, c, req("example6", 0, a, b)), ok, st(ok, lim, 0, time.Second), st(ok, lim, 0, time.Second))
	// user-a is over its limit but in shadow mode: its status is OK (as in
	// the reference) with limit_remaining 0; user-b is really over.
	wantResponse(t, "second", call(t, c, req("example6", 0, a, b)), over, st(ok, lim, 0, time.Second), st(over, lim, 0, time.Second))
	wantResponse(t, "shadow alone", call(t, c, req("example6", 0, a)), ok, st(ok, lim, 0, time.Second))

	// Global shadow mode: statuses keep their codes, overall is OK.
	_, g := newServer(t, memoryLimiter(clk), cfg, envoyrls.WithGlobalShadowMode(true))
	call(t, g, req("example6", 0, b))
	wantResponse(t, "global shadow", call(t, g, req("example6", 0, b)), ok, st(over, lim, 0, time.Second))
}

func TestWildcardsAndShareThreshold(t *testing.T) {
	_, c := memoryServer(t, `
- domain: files
  descriptors:
    - key: path
      value: /shared/*
      share_threshold: true
      rate_limit: {unit: hour, requests_per_unit: 2}
    - key: path
      value: /own/*
      rate_limit: {unit: hour, requests_per_unit: 1}
`)
	shared := limit(2, ratelimitv3.RateLimitResponse_RateLimit_HOUR, "")
	own := limit(1, ratelimitv3.RateLimitResponse_RateLimit_HOUR, "")
	wantResponse(t, "shared 1", call(t, c, req("files", 0, desc("path", "/shared/a"))), ok, st(ok, shared, 1, 30*time.Minute))
	wantResponse(t, "shared 2, other value, same bucket", call(t, c, req("files", 0, desc("path", "/shared/b"))), ok, st(ok, shared, 0, time.Hour))
	wantResponse(t, "shared 3", call(t, c, req("files", 0, desc("path", "/shared/c"))), over, st(over, shared, 0, 30*time.Minute))
	wantResponse(t, "own a", call(t, c, req("files", 0, desc("path", "/own/a"))), ok, st(ok, own, 0, time.Hour))
	wantResponse(t, "own b has its own bucket", call(t, c, req("files", 0, desc("path", "/own/b"))), ok, st(ok, own, 0, time.Hour))
	wantResponse(t, "own a again", call(t, c, req("files", 0, desc("path", "/own/a"))), over, st(over, own, 0, time.Hour))
	wantResponse(t, "no wildcard match", call(t, c, req("files", 0, desc("path", "/other"))), ok, st(ok, nil, 0, 0))
}

func TestReplaces(t *testing.T) {
	_, c := memoryServer(t, `
- domain: example7
  descriptors:
    - key: key_1
      value: value_1
      descriptors:
        - key: user
          value: bkthomps
          rate_limit: {name: specific_limit, requests_per_unit: 1, unit: second}
    - key: key_2
      value: value_2
      descriptors:
        - key: user
          value: bkthomps
          rate_limit:
            replaces: [{name: specific_limit}]
            requests_per_unit: 10
            unit: second
`)
	specific := limit(1, ratelimitv3.RateLimitResponse_RateLimit_SECOND, "specific_limit")
	wider := limit(10, ratelimitv3.RateLimitResponse_RateLimit_SECOND, "")
	d1 := desc("key_1", "value_1", "user", "bkthomps")
	d2 := desc("key_2", "value_2", "user", "bkthomps")
	for i := range 3 {
		// The replaced limit is not checked (nor charged).
		wantResponse(t, "both", call(t, c, req("example7", 0, d1, d2)), ok,
			st(ok, nil, 0, 0), st(ok, wider, uint32(9-i), time.Duration(i+1)*100*time.Millisecond))
	}
	wantResponse(t, "specific alone", call(t, c, req("example7", 0, d1)), ok, st(ok, specific, 0, time.Second))
	wantResponse(t, "specific alone again", call(t, c, req("example7", 0, d1)), over, st(over, specific, 0, time.Second))
}

func TestLimitOverride(t *testing.T) {
	_, c := memoryServer(t, perIPConfig)
	d := desc("remote_address", "10.0.0.9")
	d.Limit = &commonv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 1, Unit: typev3.RateLimitUnit_HOUR, UnitMultiplier: wrapperspb.UInt32(2)}
	cur := &ratelimitv3.RateLimitResponse_RateLimit{RequestsPerUnit: 1, Unit: ratelimitv3.RateLimitResponse_RateLimit_HOUR, UnitMultiplier: wrapperspb.UInt32(2)}
	wantResponse(t, "override", call(t, c, req("edge", 0, d)), ok, st(ok, cur, 0, 2*time.Hour))
	wantResponse(t, "override over", call(t, c, req("edge", 0, d)), over, st(over, cur, 0, 2*time.Hour))
	// Unknown domain: the override is ignored, as in the reference.
	wantResponse(t, "override, unknown domain", call(t, c, req("nowhere", 0, d)), ok, st(ok, nil, 0, 0))
}

func TestSetConfigLiveReload(t *testing.T) {
	clk := newClock()
	srv, c := newServer(t, memoryLimiter(clk), perIPConfig)
	a := desc("remote_address", "10.0.0.1")
	for range 3 {
		call(t, c, req("edge", 0, a))
	}
	if got := call(t, c, req("edge", 0, a)).GetOverallCode(); got != over {
		t.Fatalf("before reload: got %v, want OVER_LIMIT", got)
	}
	reloadPerIP(t, srv, "requests_per_unit: 3", "requests_per_unit: 6")
	// Same bucket, new limit: the 3 tokens used carry over as 3 of the 6,
	// which refill a token every 10s.
	perIP := limit(6, ratelimitv3.RateLimitResponse_RateLimit_MINUTE, "per_ip")
	wantResponse(t, "right after reload", call(t, c, req("edge", 0, a)), ok, st(ok, perIP, 2, 40*time.Second))
	clk.Advance(20 * time.Second)
	wantResponse(t, "20s after reload", call(t, c, req("edge", 0, a)), ok, st(ok, perIP, 3, 30*time.Second))

	if err := srv.SetConfig(&envoyrls.Config{Domains: []envoyrls.Domain{{Name: ""}}}); !errors.Is(err, envoyrls.ErrInvalidConfig) {
		t.Errorf("SetConfig(invalid): got %v, want ErrInvalidConfig", err)
	}
	wantResponse(t, "invalid config kept the old one", call(t, c, req("edge", 0, a)), ok, st(ok, perIP, 2, 40*time.Second))

	if err := srv.SetConfig(nil); err != nil {
		t.Fatal(err)
	}
	wantResponse(t, "empty config", call(t, c, req("edge", 0, a)), ok, st(ok, nil, 0, 0))
}

func TestInvalidRequests(t *testing.T) {
	_, c := newServer(t, memoryLimiter(newClock()), perIPConfig, envoyrls.WithMaxDescriptors(2))
	negative := desc("remote_address", "1")
	negative.IsNegativeHits = true
	badUnit := desc("remote_address", "1")
	badUnit.Limit = &commonv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 1}
	inexact := desc("remote_address", "1")
	inexact.Limit = &commonv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 99991, Unit: typev3.RateLimitUnit_DAY}
	zeroMult := desc("remote_address", "1")
	zeroMult.Limit = &commonv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 1, Unit: typev3.RateLimitUnit_DAY, UnitMultiplier: wrapperspb.UInt32(0)}
	for _, tc := range []struct {
		name string
		r    *ratelimitv3.RateLimitRequest
		want string
	}{
		{"empty domain", req("", 0, desc("a", "b")), "domain must not be empty"},
		{"no descriptors", req("edge", 0), "descriptors must not be empty"},
		{"too many descriptors", req("edge", 0, desc("a", "1"), desc("a", "2"), desc("a", "3")), "descriptors must hold at most 2"},
		{"no entries", req("edge", 0, desc("a", "1"), desc()), "descriptors[1].entries must not be empty"},
		{"empty key", req("edge", 0, desc("a", "1", "", "x")), "descriptors[0].entries[1].key must not be empty"},
		{"negative hits", req("edge", 0, negative), "descriptors[0].is_negative_hits is not supported"},
		{"override without unit", req("edge", 0, badUnit), "descriptors[0].limit.unit must be"},
		{"inexact override", req("edge", 0, inexact), "descriptors[0].limit.requests_per_unit 99991 per 1 day cannot be an exact bucket"},
		{"zero multiplier", req("edge", 0, zeroMult), "descriptors[0].limit.unit_multiplier must be > 0"},
	} {
		_, err := c.ShouldRateLimit(context.Background(), tc.r)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want INVALID_ARGUMENT containing %q", tc.name, err, tc.want)
		}
	}
}

// failingStore is a limiter.Store whose every call fails, as a Redis outage.
type failingStore struct{}

var errOutage = errors.New("connection refused")

func (failingStore) Take(context.Context, string, limiter.Limit, int64, time.Duration) (limiter.Result, error) {
	return limiter.Result{}, errOutage
}

func (failingStore) Peek(context.Context, string, limiter.Limit, int64) (limiter.Result, error) {
	return limiter.Result{}, errOutage
}

func TestStoreFailure(t *testing.T) {
	clk := newClock()
	l := limiter.New(failingStore{}, limiter.WithClock(clk.Now))
	a := desc("remote_address", "10.0.0.1")
	perIP := limit(3, ratelimitv3.RateLimitResponse_RateLimit_MINUTE, "per_ip")

	// Default: the limiter's AllowLocal decides with a local bucket.
	_, c := newServer(t, l, perIPConfig)
	var hdr metadata.MD
	wantResponse(t, "degraded", call(t, c, req("edge", 0, a), grpc.Header(&hdr)), ok, st(ok, perIP, 2, 20*time.Second))
	if got := hdr.Get(envoyrls.DegradedHeader); len(got) != 1 || got[0] != "true" {
		t.Errorf("header %s: got %q, want [true]", envoyrls.DegradedHeader, got)
	}
	// Unlimited and unmatched descriptors never touch the store.
	hdr = nil
	call(t, c, req("edge", 0, desc("ldap", "x")), grpc.Header(&hdr))
	if got := hdr.Get(envoyrls.DegradedHeader); len(got) != 0 {
		t.Errorf("header %s without a store call: got %q, want none", envoyrls.DegradedHeader, got)
	}

	// Deny: UNAVAILABLE, never OVER_LIMIT; first with the store's error,
	// then, the store known to be down, without calling it. (A limiter of
	// its own: the one above already knows the store is down.)
	_, d := newServer(t, limiter.New(failingStore{}, limiter.WithClock(clk.Now)), perIPConfig, envoyrls.WithFailurePolicy(limiter.Deny))
	_, err := d.ShouldRateLimit(context.Background(), req("edge", 0, a))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Deny: got %v, want UNAVAILABLE carrying the store's error", err)
	}
	_, err = d.ShouldRateLimit(context.Background(), req("edge", 0, a))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Deny, store known to be down: got %v, want UNAVAILABLE", err)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	if _, err := envoyrls.New(memoryLimiter(newClock()), nil, envoyrls.WithKeyPrefix("{x}")); err == nil {
		t.Errorf("New with a braced key prefix: got no error")
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	_, err := envoyrls.New(memoryLimiter(newClock()), &envoyrls.Config{Domains: []envoyrls.Domain{{Name: "a"}, {Name: "a"}}})
	if !errors.Is(err, envoyrls.ErrInvalidConfig) || !strings.Contains(err.Error(), `duplicate domain "a"`) {
		t.Errorf("got %v, want a duplicate domain error", err)
	}
}

// Many concurrent calls on one bucket admit exactly requests_per_unit.
func TestConcurrentCallsAreExact(t *testing.T) {
	_, c := memoryServer(t, `
- domain: d
  descriptors:
    - key: k
      rate_limit: {unit: hour, requests_per_unit: 25}
`)
	okCount, errs := testkit.CountParallel(8, 10, func(int) (int, error) {
		resp, err := c.ShouldRateLimit(context.Background(), req("d", 0, desc("k", "v"), desc("k", "v")))
		n := 0
		for _, s := range resp.GetStatuses() {
			if s.GetCode() == ok {
				n++
			}
		}
		return n, err
	})
	for _, err := range errs {
		t.Error(err)
	}
	if okCount != 25 {
		t.Errorf("got %d OK statuses from 160 hits on a 25/hour bucket, want 25", okCount)
	}
}
