package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/topdeck/resilience/internal/redistest"
)

// envoyConfig is a server configuration with an envoy_ratelimit section:
// files of Envoy's reference rate limit service, as a list.
const envoyConfig = `
limits:
  shared:
    max_calls: 100
    time_window: 1s
envoy_ratelimit:
  - domain: edge
    descriptors:
      - key: remote_address
        rate_limit:
          unit: hour
          requests_per_unit: 3
      - key: ldap
        rate_limit:
          unlimited: true
  - domain: messaging
    descriptors:
      - key: message_type
        value: marketing
        descriptors:
          - key: to_number
            rate_limit: {unit: day, requests_per_unit: 1}
            shadow_mode: true
`

func rlsRequest(domain string, kv ...string) *ratelimitv3.RateLimitRequest {
	d := &commonv3.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &commonv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return &ratelimitv3.RateLimitRequest{Domain: domain, Descriptors: []*commonv3.RateLimitDescriptor{d}}
}

func shouldRateLimit(t *testing.T, c ratelimitv3.RateLimitServiceClient, r *ratelimitv3.RateLimitRequest, opts ...grpc.CallOption) *ratelimitv3.RateLimitResponse {
	t.Helper()
	resp, err := c.ShouldRateLimit(ctxT(t, 10*time.Second), r, opts...)
	if err != nil {
		t.Fatalf("ShouldRateLimit(%s): %v", r.GetDomain(), err)
	}
	return resp
}

// Envoy's rate limit service on two replicas sharing one Redis: one bucket
// per descriptor, exact across replicas.
func TestEnvoyRateLimitService(t *testing.T) {
	rs := redistest.Start(t)
	path := writeConfig(t, envoyConfig)
	var clients []ratelimitv3.RateLimitServiceClient
	for range 2 {
		r := startReplica(t, "--config", path, "--redis-url", rs.URL())
		clients = append(clients, ratelimitv3.NewRateLimitServiceClient(r.conn))
	}

	ip := rlsRequest("edge", "remote_address", "10.0.0.1")
	for i := range 5 {
		resp := shouldRateLimit(t, clients[i%2], ip)
		want := ratelimitv3.RateLimitResponse_OK
		if i >= 3 {
			want = ratelimitv3.RateLimitResponse_OVER_LIMIT
		}
		s := resp.GetStatuses()[0]
		if resp.GetOverallCode() != want || s.GetCode() != want {
			t.Errorf("call %d: got overall %v, status %v; want %v", i, resp.GetOverallCode(), s.GetCode(), want)
		}
		if cur := s.GetCurrentLimit(); cur.GetRequestsPerUnit() != 3 || cur.GetUnit() != ratelimitv3.RateLimitResponse_RateLimit_HOUR {
			t.Errorf("call %d: got current_limit %v, want 3 per HOUR", i, cur)
		}
		if wantRemaining := uint32(max(2-i, 0)); s.GetLimitRemaining() != wantRemaining {
			t.Errorf("call %d: got limit_remaining %d, want %d", i, s.GetLimitRemaining(), wantRemaining)
		}
		if d := s.GetDurationUntilReset().AsDuration(); d <= 0 || d > time.Hour {
			t.Errorf("call %d: got duration_until_reset %v, want in (0, 1h]", i, d)
		}
	}
	if got := shouldRateLimit(t, clients[0], rlsRequest("edge", "remote_address", "10.0.0.2")).GetOverallCode(); got != ratelimitv3.RateLimitResponse_OK {
		t.Errorf("another address: got %v, want OK (its own bucket)", got)
	}

	unlimited := shouldRateLimit(t, clients[1], rlsRequest("edge", "ldap", "x"))
	if s := unlimited.GetStatuses()[0]; s.GetCode() != ratelimitv3.RateLimitResponse_OK || s.GetLimitRemaining() != 1<<32-1 || s.GetCurrentLimit() != nil {
		t.Errorf("unlimited: got %v, want OK with limit_remaining 4294967295 and no current_limit", s)
	}
	for _, r := range []*ratelimitv3.RateLimitRequest{rlsRequest("nowhere", "remote_address", "10.0.0.1"), rlsRequest("edge", "user", "bob")} {
		resp := shouldRateLimit(t, clients[0], r)
		if resp.GetOverallCode() != ratelimitv3.RateLimitResponse_OK || resp.GetStatuses()[0].GetCurrentLimit() != nil {
			t.Errorf("%s without a matching limit: got %v, want OK without current_limit", r.GetDomain(), resp)
		}
	}

	// Shadow mode: over the limit, reported OK (as the reference service does).
	marketing := rlsRequest("messaging", "message_type", "marketing", "to_number", "2061111111")
	for i := range 3 {
		resp := shouldRateLimit(t, clients[i%2], marketing)
		if resp.GetOverallCode() != ratelimitv3.RateLimitResponse_OK {
			t.Errorf("shadow mode call %d: got %v, want OK", i, resp.GetOverallCode())
		}
	}

	_, err := clients[0].ShouldRateLimit(ctxT(t, 10*time.Second), &ratelimitv3.RateLimitRequest{Domain: "edge"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "descriptors") {
		t.Errorf("no descriptors: got %v, want INVALID_ARGUMENT naming descriptors", err)
	}

	// Redis down: the limiter's local fallback answers, marked degraded.
	rs.Kill()
	var hdr metadata.MD
	resp := shouldRateLimit(t, clients[0], rlsRequest("edge", "remote_address", "10.0.0.3"), grpc.Header(&hdr))
	if resp.GetOverallCode() != ratelimitv3.RateLimitResponse_OK || strings.Join(hdr.Get("resilience-degraded"), ",") != "true" {
		t.Errorf("Redis down: got %v with header %v, want OK and resilience-degraded: true", resp.GetOverallCode(), hdr)
	}
}

// A changed envoy_ratelimit section is put in force by the config reload.
func TestEnvoyRateLimitReload(t *testing.T) {
	path := writeConfig(t, envoyConfig)
	r := startReplica(t, "--config", path)
	c := ratelimitv3.NewRateLimitServiceClient(r.conn)
	ip := rlsRequest("edge", "remote_address", "10.0.0.1")
	if got := shouldRateLimit(t, c, ip).GetStatuses()[0].GetCurrentLimit().GetRequestsPerUnit(); got != 3 {
		t.Fatalf("before reload: got %d per hour, want 3", got)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(envoyConfig, "requests_per_unit: 3", "requests_per_unit: 7", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the reloaded limit of 7 per hour is in force", func() bool {
		return shouldRateLimit(t, c, ip).GetStatuses()[0].GetCurrentLimit().GetRequestsPerUnit() == 7
	})
}

// A bad envoy_ratelimit section stops the server at start, naming the line
// and the field.
func TestEnvoyRateLimitBadConfig(t *testing.T) {
	bad := strings.Replace(envoyConfig, "unit: hour", "unit: fortnight", 1)
	path := writeConfig(t, bad)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "resilienced"), "--listen", "127.0.0.1:0", "--config", path)
	cmd.Env = append(os.Environ(), "RESILIENCE_LISTEN=", "RESILIENCE_REDIS_URL=", "RESILIENCE_CONFIG=")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("resilienced started with a bad envoy_ratelimit section; output:\n%s", out)
	}
	for _, want := range []string{"line 11", "envoy_ratelimit[0].descriptors[0].rate_limit.unit", "fortnight"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output %q does not contain %q", out, want)
		}
	}
}

// envoySettingsConfig is the envoy_ratelimit section in its mapping form:
// the reference service's settings next to its files (here a middle and a
// multiple wildcard, and a quota-mode descriptor with metadata).
const envoySettingsConfig = `
envoy_ratelimit:
  response_headers:
    enabled: true
    reset_header: X-RateLimit-Reset
  response_dynamic_metadata: true
  domains:
    - domain: api
      descriptors:
        - key: path
          value: /api/*/action
          rate_limit: {unit: hour, requests_per_unit: 2}
        - key: route
          value: svc*ep*rpc
          share_threshold: true
          rate_limit: {unit: hour, requests_per_unit: 1}
        - key: service
          value: billing
          quota_mode: true
          rate_limit: {unit: hour, requests_per_unit: 1}
          metadata:
            quota: {name: billing}
`

// Issue 16 end to end on a Redis-backed replica: a wildcard in the middle of
// a value applies its limit, share_threshold shares it, a quota-mode
// descriptor alone over its limit is OVER_LIMIT, and the responses carry
// the rate limit headers and the descriptor's metadata.
func TestEnvoyWildcardsHeadersMetadata(t *testing.T) {
	rs := redistest.Start(t)
	r := startReplica(t, "--config", writeConfig(t, envoySettingsConfig), "--redis-url", rs.URL())
	c := ratelimitv3.NewRateLimitServiceClient(r.conn)
	const okCode, overCode = ratelimitv3.RateLimitResponse_OK, ratelimitv3.RateLimitResponse_OVER_LIMIT

	path := rlsRequest("api", "path", "/api/42/action")
	for i, want := range []ratelimitv3.RateLimitResponse_Code{okCode, okCode, overCode} {
		resp := shouldRateLimit(t, c, path)
		s := resp.GetStatuses()[0]
		if resp.GetOverallCode() != want || s.GetCurrentLimit().GetRequestsPerUnit() != 2 {
			t.Errorf("middle wildcard call %d: got %v under %v, want %v under 2 per hour", i, resp.GetOverallCode(), s.GetCurrentLimit(), want)
		}
		headers := map[string]string{}
		for _, h := range resp.GetResponseHeadersToAdd() {
			headers[h.GetKey()] = h.GetValue()
		}
		wantRemaining := fmt.Sprint(max(1-i, 0))
		if headers["RateLimit-Limit"] != "2" || headers["RateLimit-Remaining"] != wantRemaining || headers["X-RateLimit-Reset"] == "" {
			t.Errorf("middle wildcard call %d: got headers %v, want RateLimit-Limit 2, RateLimit-Remaining %s and X-RateLimit-Reset", i, headers, wantRemaining)
		}
		if reset, err := strconv.Atoi(headers["X-RateLimit-Reset"]); err != nil || reset <= 0 || reset > 3600 {
			t.Errorf("middle wildcard call %d: got X-RateLimit-Reset %q, want whole seconds in (0, 3600]", i, headers["X-RateLimit-Reset"])
		}
	}
	if got := shouldRateLimit(t, c, rlsRequest("api", "path", "/api/42/other")); got.GetStatuses()[0].GetCurrentLimit() != nil {
		t.Errorf("a value the wildcard does not match: got %v, want no limit", got.GetStatuses()[0])
	}

	first := shouldRateLimit(t, c, rlsRequest("api", "route", "svc1ep1rpc"))
	second := shouldRateLimit(t, c, rlsRequest("api", "route", "svc2ep2rpc"))
	if first.GetOverallCode() != okCode || second.GetOverallCode() != overCode {
		t.Errorf("shared multiple wildcard: got %v then %v, want OK then OVER_LIMIT (one bucket)", first.GetOverallCode(), second.GetOverallCode())
	}

	billing := rlsRequest("api", "service", "billing")
	resp := shouldRateLimit(t, c, billing)
	md := resp.GetDynamicMetadata().GetFields()
	if resp.GetOverallCode() != okCode || md["domain"].GetStringValue() != "api" ||
		md["metadata"].GetStructValue().GetFields()["quota"].GetStructValue().GetFields()["name"].GetStringValue() != "billing" {
		t.Errorf("quota within its limit: got %v with dynamic_metadata %v, want OK with metadata quota.name billing", resp.GetOverallCode(), resp.GetDynamicMetadata())
	}
	resp = shouldRateLimit(t, c, billing)
	if resp.GetOverallCode() != overCode || resp.GetDynamicMetadata().GetFields()["metadata"] != nil {
		t.Errorf("the only quota over: got %v with dynamic_metadata %v, want OVER_LIMIT without metadata", resp.GetOverallCode(), resp.GetDynamicMetadata())
	}
}
