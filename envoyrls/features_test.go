package envoyrls_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/topdeck/resilience/internal/redistest"
	"github.com/topdeck/resilience/limiter"
	"github.com/topdeck/resilience/limiter/redisstore"
)

// onStores runs fn on the embedded memory store (on a manual clock: exact
// is true, clk advances time) and on a private Redis (real time: clk is
// nil, so steps use limits long enough that the run's own duration does not
// matter and durations are checked loosely).
func onStores(t *testing.T, fn func(t *testing.T, l *limiter.Limiter, clk *clock)) {
	t.Run("memory", func(t *testing.T) {
		clk := newClock()
		fn(t, memoryLimiter(clk), clk)
	})
	t.Run("redis", func(t *testing.T) {
		rs := redistest.Start(t)
		rdb := rs.Client()
		t.Cleanup(func() { _ = rdb.Close() })
		fn(t, limiter.New(redisstore.New(rdb)), nil)
	})
}

// step is one call and the codes and remaining tokens it must answer.
type step struct {
	name      string
	r         *ratelimitv3.RateLimitRequest
	overall   ratelimitv3.RateLimitResponse_Code
	codes     []ratelimitv3.RateLimitResponse_Code
	remaining []uint32
	rpu       []uint32 // current_limit.requests_per_unit; 0 for none
}

func runSteps(t *testing.T, c ratelimitv3.RateLimitServiceClient, steps []step) {
	t.Helper()
	for _, s := range steps {
		resp := call(t, c, s.r)
		if resp.GetOverallCode() != s.overall {
			t.Errorf("%s: got overall %v, want %v", s.name, resp.GetOverallCode(), s.overall)
		}
		if len(resp.GetStatuses()) != len(s.codes) {
			t.Fatalf("%s: got %d statuses, want %d", s.name, len(resp.GetStatuses()), len(s.codes))
		}
		for i, st := range resp.GetStatuses() {
			if st.GetCode() != s.codes[i] || st.GetLimitRemaining() != s.remaining[i] || st.GetCurrentLimit().GetRequestsPerUnit() != s.rpu[i] {
				t.Errorf("%s: status %d: got %v with %d remaining under %d, want %v with %d under %d",
					s.name, i, st.GetCode(), st.GetLimitRemaining(), st.GetCurrentLimit().GetRequestsPerUnit(), s.codes[i], s.remaining[i], s.rpu[i])
			}
			if st.GetCode() == over && st.GetDurationUntilReset().AsDuration() <= 0 {
				t.Errorf("%s: status %d: got duration_until_reset %v, want > 0 when over", s.name, i, st.GetDurationUntilReset())
			}
		}
	}
}

func codesOf(cs ...ratelimitv3.RateLimitResponse_Code) []ratelimitv3.RateLimitResponse_Code {
	return cs
}
func nums(ns ...uint32) []uint32 { return ns }

const wildcardConfig = `
- domain: w
  descriptors:
    - key: midWild
      value: bar*b
      rate_limit: {unit: hour, requests_per_unit: 2}
    - key: multiWild
      value: foo*bar*baz
      rate_limit: {unit: hour, requests_per_unit: 1}
    - key: midpath
      value: /api*v1
      share_threshold: true
      rate_limit: {unit: hour, requests_per_unit: 2}
    - key: tenant
      value: t*prod
      share_threshold: true
      descriptors:
        - key: resource
          value: res*v2
          share_threshold: true
          rate_limit: {unit: hour, requests_per_unit: 1}
`

// Issue 16, item 1: a '*' anywhere in a value is a wildcard; without
// share_threshold each value has its own bucket, with it all share one.
func TestWildcardsAnywhere(t *testing.T) {
	onStores(t, func(t *testing.T, l *limiter.Limiter, _ *clock) {
		_, c := newServer(t, l, wildcardConfig)
		r := func(kv ...string) *ratelimitv3.RateLimitRequest { return req("w", 0, desc(kv...)) }
		runSteps(t, c, []step{
			{"barab 1", r("midWild", "barab"), ok, codesOf(ok), nums(1), nums(2)},
			{"barab 2", r("midWild", "barab"), ok, codesOf(ok), nums(0), nums(2)},
			{"barab 3 is over", r("midWild", "barab"), over, codesOf(over), nums(0), nums(2)},
			{"barb: * matches nothing, own bucket", r("midWild", "barb"), ok, codesOf(ok), nums(1), nums(2)},
			{"bara does not match", r("midWild", "bara"), ok, codesOf(ok), nums(0), nums(0)},
			{"foo1bar2baz", r("multiWild", "foo1bar2baz"), ok, codesOf(ok), nums(0), nums(1)},
			{"foo1bar2baz again", r("multiWild", "foo1bar2baz"), over, codesOf(over), nums(0), nums(1)},
			{"foobarbaz", r("multiWild", "foobarbaz"), ok, codesOf(ok), nums(0), nums(1)},
			{"foo1baz does not match", r("multiWild", "foo1baz"), ok, codesOf(ok), nums(0), nums(0)},
			{"shared /api/a/v1", r("midpath", "/api/a/v1"), ok, codesOf(ok), nums(1), nums(2)},
			{"shared /api/b/v1", r("midpath", "/api/b/v1"), ok, codesOf(ok), nums(0), nums(2)},
			{"shared /apiv1 is over", r("midpath", "/apiv1"), over, codesOf(over), nums(0), nums(2)},
			{"shared nested", r("tenant", "t1prod", "resource", "res1v2"), ok, codesOf(ok), nums(0), nums(1)},
			{"shared nested, other values", r("tenant", "t2prod", "resource", "resXv2"), over, codesOf(over), nums(0), nums(1)},
		})
	})
}

const quotaConfig = `
- domain: rl
  descriptors:
    - key: service
      value: service_1
      quota_mode: true
      rate_limit: {unit: hour, requests_per_unit: 1}
      metadata:
        service_with_quota:
          name: "service_1"
        tier: gold
    - key: service
      value: service_2
      quota_mode: true
      rate_limit: {unit: hour, requests_per_unit: 2}
      metadata:
        service_with_quota:
          name: "service_2"
          region: eu
    - key: user
      rate_limit: {unit: hour, requests_per_unit: 1}
      metadata: {per_user: true}
    - key: free
      rate_limit: {unlimited: true}
`

// Issue 16, item 3: OVER_LIMIT overall when a descriptor that is not in
// quota mode is over, or when all quota-mode ones are; statuses keep their
// codes.
func TestQuotaMode(t *testing.T) {
	onStores(t, func(t *testing.T, l *limiter.Limiter, _ *clock) {
		_, c := newServer(t, l, quotaConfig)
		s1, s2 := desc("service", "service_1"), desc("service", "service_2")
		runSteps(t, c, []step{
			{"both quotas within", req("rl", 0, s1, s2), ok, codesOf(ok, ok), nums(0, 1), nums(1, 2)},
			{"one quota over", req("rl", 0, s1, s2), ok, codesOf(over, ok), nums(0, 0), nums(1, 2)},
			{"all quotas over", req("rl", 0, s1, s2), over, codesOf(over, over), nums(0, 0), nums(1, 2)},
			{"the only quota over", req("rl", 0, s1), over, codesOf(over), nums(0), nums(1)},
			{"a quota over and an unlimited one", req("rl", 0, s1, desc("free", "x")), over, codesOf(over, ok), nums(0, 1<<32-1), nums(1, 0)},
			{"a quota over, a rate limit within", req("rl", 0, s1, desc("user", "u1")), over, codesOf(over, ok), nums(0, 0), nums(1, 1)},
			{"a rate limit over, no quota", req("rl", 0, desc("user", "u1")), over, codesOf(over), nums(0), nums(1)},
		})
	})

	// Global quota mode: every descriptor is a quota one, including those
	// without a limit, as in the reference.
	_, g := newServer(t, memoryLimiter(newClock()), "quota_mode: true\ndomains:\n"+indent(quotaConfig))
	u := desc("user", "u2")
	runSteps(t, g, []step{
		{"global: within", req("rl", 0, u), ok, codesOf(ok), nums(0), nums(1)},
		{"global: the only one over", req("rl", 0, u), over, codesOf(over), nums(0), nums(1)},
		{"global: over and one without a limit", req("rl", 0, u, desc("nothing", "x")), ok, codesOf(over, ok), nums(0, 0), nums(1, 0)},
	})
}

// indent makes a list YAML the value of a mapping key.
func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimPrefix(s, "\n"), "\n", "\n  ")
}

// Issue 16, item 2: with response_dynamic_metadata, the response carries the
// reference's dynamic_metadata, whose "metadata" merges that of the
// descriptors that matched and were not over their limit.
func TestDynamicMetadata(t *testing.T) {
	onStores(t, func(t *testing.T, l *limiter.Limiter, _ *clock) {
		_, c := newServer(t, l, "response_dynamic_metadata: true\ndomains:\n"+indent(quotaConfig))
		s1, s2 := desc("service", "service_1"), desc("service", "service_2")
		s2.HitsAddend = wrapperspb.UInt64(1)
		s2.Limit = &commonv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 5, Unit: typev3.RateLimitUnit_HOUR}
		s2plain := desc("service", "service_2")

		wantMetadata(t, "both pass", call(t, c, req("rl", 1, s1, s2plain)), map[string]any{
			"domain":     "rl",
			"hitsAddend": 1,
			"descriptors": []any{
				map[string]any{"entries": []any{"service=service_1"}},
				map[string]any{"entries": []any{"service=service_2"}},
			},
			"metadata": map[string]any{
				// Maps merge key by key; service_1's name, first, stays.
				"service_with_quota": map[string]any{"name": "service_1", "region": "eu"},
				"tier":               "gold",
			},
		})
		// service_1 is now over: only the others' metadata. service_2 with
		// an override has no configured metadata.
		wantMetadata(t, "one over", call(t, c, req("rl", 0, s1, s2, desc("user", "u"), desc("free", "x"))), map[string]any{
			"domain": "rl",
			"descriptors": []any{
				map[string]any{"entries": []any{"service=service_1"}},
				map[string]any{"entries": []any{"service=service_2"}, "hitsAddend": 1, "limit": "requests_per_unit:5 unit:HOUR"},
				map[string]any{"entries": []any{"user=u"}},
				map[string]any{"entries": []any{"free=x"}},
			},
			"metadata": map[string]any{"per_user": true},
		})
		wantMetadata(t, "nothing passes with metadata", call(t, c, req("rl", 0, s1)), map[string]any{
			"domain":      "rl",
			"descriptors": []any{map[string]any{"entries": []any{"service=service_1"}}},
		})

		// Off (the default): no dynamic_metadata at all.
		_, off := newServer(t, l, quotaConfig)
		if got := call(t, off, req("rl", 0, desc("service", "service_2"))).GetDynamicMetadata(); got != nil {
			t.Errorf("without response_dynamic_metadata: got %v, want none", got)
		}
	})
}

func wantMetadata(t *testing.T, name string, resp *ratelimitv3.RateLimitResponse, want map[string]any) {
	t.Helper()
	w, err := structpb.NewStruct(want)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(resp.GetDynamicMetadata(), w) {
		t.Errorf("%s: dynamic_metadata:\ngot  %s\nwant %s", name, prototext.Format(resp.GetDynamicMetadata()), prototext.Format(w))
	}
}

// Issue 16, item 4: a descriptor's explicit hits_addend 0 checks without
// charging; unset, the request's hits_addend applies (0 means 1).
func TestHitsAddendZeroChecksOnly(t *testing.T) {
	onStores(t, func(t *testing.T, l *limiter.Limiter, _ *clock) {
		_, c := newServer(t, l, redisConfig)
		check := desc("remote_address", "10.0.0.7")
		check.HitsAddend = wrapperspb.UInt64(0)
		take := desc("remote_address", "10.0.0.7")
		var steps []step
		for i := range 3 {
			steps = append(steps, step{fmt.Sprintf("check %d on a full bucket", i), req("edge", 4, check), ok, codesOf(ok), nums(5), nums(5)})
		}
		for i := range 5 {
			steps = append(steps,
				step{fmt.Sprintf("take %d", i), req("edge", 0, take), ok, codesOf(ok), nums(uint32(4 - i)), nums(5)},
				step{fmt.Sprintf("check after take %d", i), req("edge", 0, check), ok, codesOf(ok), nums(uint32(4 - i)), nums(5)})
		}
		steps[len(steps)-1] = step{"check an empty bucket", req("edge", 0, check), over, codesOf(over), nums(0), nums(5)}
		runSteps(t, c, steps)
	})
}

// Issue 16, item 5: a changed limit on the same entries starts from the
// tokens used, not from the old limit's state: a request-level override of
// 10 per day drained, then 42 per hour, is admitted; so is a reload that
// changes a descriptor's unit.
func TestLimitChangeOnSameEntries(t *testing.T) {
	onStores(t, func(t *testing.T, l *limiter.Limiter, _ *clock) {
		srv, c := newServer(t, l, perIPConfig)
		withOverride := func(rpu uint32, unit typev3.RateLimitUnit) *ratelimitv3.RateLimitRequest {
			d := desc("remote_address", "10.9.9.9")
			d.Limit = &commonv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: rpu, Unit: unit}
			return req("edge", 0, d)
		}
		var steps []step
		for i := range 10 {
			steps = append(steps, step{fmt.Sprintf("10/DAY %d", i), withOverride(10, typev3.RateLimitUnit_DAY), ok, codesOf(ok), nums(uint32(9 - i)), nums(10)})
		}
		steps = append(steps,
			step{"10/DAY drained", withOverride(10, typev3.RateLimitUnit_DAY), over, codesOf(over), nums(0), nums(10)},
			// 10 tokens used carry over as 10 of 42.
			step{"42/HOUR admits", withOverride(42, typev3.RateLimitUnit_HOUR), ok, codesOf(ok), nums(31), nums(42)},
		)
		runSteps(t, c, steps)

		// A reload from 3 per minute to 3 per day on a drained bucket:
		// still 3 used, but no longer a day's debt when going back.
		a := req("edge", 0, desc("remote_address", "10.0.0.8"))
		for range 3 {
			call(t, c, a)
		}
		reloadPerIP(t, srv, "unit: minute, requests_per_unit: 3", "unit: day, requests_per_unit: 3")
		runSteps(t, c, []step{{"reloaded to 3/day: 3 used", a, over, codesOf(over), nums(0), nums(3)}})
		resp := call(t, c, a)
		if d := resp.GetStatuses()[0].GetDurationUntilReset().AsDuration(); d < 7*time.Hour || d > 8*time.Hour {
			t.Errorf("3/day, drained: got duration_until_reset %v, want 8h (one token) less the run's time", d)
		}
		reloadPerIP(t, srv, "unit: minute, requests_per_unit: 3", "unit: second, requests_per_unit: 100")
		// The day's debt is 3 tokens used, not 24 hours: 100/s admits.
		runSteps(t, c, []step{{"reloaded to 100/second", a, ok, codesOf(ok), nums(96), nums(100)}})
	})
}

// Issue 16, item 6: rate limit headers from the token bucket, for the
// descriptor closest to its limit, or over it.
func TestResponseHeaders(t *testing.T) {
	onStores(t, func(t *testing.T, l *limiter.Limiter, clk *clock) {
		_, c := newServer(t, l, "response_headers: {enabled: true}\ndomains:\n"+indent(quotaConfig+`
- domain: h
  descriptors:
    - key: a
      rate_limit: {unit: minute, requests_per_unit: 3}
    - key: b
      rate_limit: {unit: hour, requests_per_unit: 10}
    - key: q
      quota_mode: true
      rate_limit: {unit: hour, requests_per_unit: 1}
`))
		a, b := desc("a", "1"), desc("b", "1")
		// a: 3/min, one taken: 2 left, full again in 20s. b: 9 left, 6m.
		wantHeaders(t, clk, "a is closest", call(t, c, req("h", 0, b, a)), "3", "2", 20)
		// The statuses of b count down to 1 left (in whatever order the
		// concurrent decisions ran): 9 used, full again in 54 minutes.
		wantHeaders(t, clk, "b is closest", call(t, c, req("h", 0, b, desc("a", "2"), b, b, b, b, b, b, b)), "10", "1", 3240)
		// One b takes the last token, the other is over: retry in 6m.
		wantHeaders(t, clk, "b is over", call(t, c, req("h", 0, a, b, b)), "10", "0", 360)
		// An over quota-mode descriptor does not take over the headers:
		// the first with the fewest tokens left keeps them. (Hits 3 fill
		// a's bucket and are more than q's limit.)
		wantHeaders(t, clk, "quota over", call(t, c, req("h", 3, desc("a", "4"), desc("q", "1"))), "3", "0", 60)
		if got := call(t, c, req("h", 0, desc("none", "1"), desc("free", "x"))).GetResponseHeadersToAdd(); got != nil {
			t.Errorf("no limited descriptor: got headers %v, want none", got)
		}
		if got := call(t, c, req("rl", 0, desc("free", "x"))).GetResponseHeadersToAdd(); got != nil {
			t.Errorf("unlimited: got headers %v, want none", got)
		}

		// Names as configured; off by default.
		_, named := newServer(t, l, `
response_headers: {enabled: true, limit_header: X-RL-Limit, remaining_header: X-RL-Remaining, reset_header: X-RL-Reset}
domains:
  - domain: h
    descriptors:
      - key: a
        rate_limit: {unit: minute, requests_per_unit: 3}
`)
		hs := call(t, named, req("h", 0, desc("a", "9"))).GetResponseHeadersToAdd()
		if len(hs) != 3 || hs[0].GetKey() != "X-RL-Limit" || hs[1].GetKey() != "X-RL-Remaining" || hs[2].GetKey() != "X-RL-Reset" {
			t.Errorf("configured names: got %v", hs)
		}
		_, off := newServer(t, l, perIPConfig)
		if got := call(t, off, req("edge", 0, desc("remote_address", "1.2.3.4"))).GetResponseHeadersToAdd(); got != nil {
			t.Errorf("headers off: got %v, want none", got)
		}
	})
}

// wantHeaders checks the three default headers; on the manual clock the
// reset is exact, on Redis it may be a second less.
func wantHeaders(t *testing.T, clk *clock, name string, resp *ratelimitv3.RateLimitResponse, limit, remaining string, reset int64) {
	t.Helper()
	hs := resp.GetResponseHeadersToAdd()
	want := []*corev3.HeaderValue{
		{Key: "RateLimit-Limit", Value: limit},
		{Key: "RateLimit-Remaining", Value: remaining},
		{Key: "RateLimit-Reset", Value: fmt.Sprint(reset)},
	}
	if clk == nil && len(hs) == 3 && hs[2].GetValue() == fmt.Sprint(reset-1) {
		want[2].Value = hs[2].GetValue()
	}
	if len(hs) != len(want) {
		t.Errorf("%s: got headers %v, want %v", name, hs, want)
		return
	}
	for i := range want {
		if !proto.Equal(hs[i], want[i]) {
			t.Errorf("%s: header %d: got %v, want %v", name, i, hs[i], want[i])
		}
	}
}
