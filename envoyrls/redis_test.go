package envoyrls_test

import (
	"context"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/topdeck/resilience/envoyrls"
	"github.com/topdeck/resilience/internal/redistest"
	"github.com/topdeck/resilience/limiter"
	"github.com/topdeck/resilience/limiter/redisstore"
)

const redisConfig = `
- domain: edge
  descriptors:
    - key: remote_address
      rate_limit: {unit: hour, requests_per_unit: 5}
    - key: tenant
      descriptors:
        - key: path
          value: "/api/*"
          share_threshold: true
          rate_limit: {unit: day, requests_per_unit: 4}
`

// Two servers (two replicas) on one Redis share every bucket exactly.
func TestRedisSharedAcrossServers(t *testing.T) {
	rs := redistest.Start(t)
	var clients []ratelimitv3.RateLimitServiceClient
	for range 2 {
		rdb := rs.Client()
		t.Cleanup(func() { _ = rdb.Close() })
		_, c := newServer(t, limiter.New(redisstore.New(rdb)), redisConfig)
		clients = append(clients, c)
	}
	for _, tc := range []struct {
		name  string
		r     *ratelimitv3.RateLimitRequest
		limit uint32
	}{
		{"per address", req("edge", 0, desc("remote_address", "10.0.0.1")), 5},
		{"shared wildcard", req("edge", 0, desc("tenant", "t1", "path", "/api/x")), 4},
	} {
		var codes []ratelimitv3.RateLimitResponse_Code
		var remaining []uint32
		for i := range int(tc.limit) + 3 {
			r := varyPath(tc.r, i)
			var hdr metadata.MD
			resp := call(t, clients[i%2], r, grpc.Header(&hdr))
			if len(hdr.Get(envoyrls.DegradedHeader)) != 0 {
				t.Errorf("%s: call %d degraded with Redis up", tc.name, i)
			}
			s := resp.GetStatuses()[0]
			codes = append(codes, s.GetCode())
			remaining = append(remaining, s.GetLimitRemaining())
			if s.GetCurrentLimit().GetRequestsPerUnit() != tc.limit {
				t.Errorf("%s: call %d: got current_limit %v, want %d per unit", tc.name, i, s.GetCurrentLimit(), tc.limit)
			}
			if s.GetDurationUntilReset().AsDuration() <= 0 {
				t.Errorf("%s: call %d: got duration_until_reset %v, want > 0", tc.name, i, s.GetDurationUntilReset())
			}
		}
		for i, c := range codes {
			want := ok
			wantRemaining := uint32(0)
			if i >= int(tc.limit) {
				want = over
			} else {
				wantRemaining = tc.limit - 1 - uint32(i)
			}
			if c != want || remaining[i] != wantRemaining {
				t.Errorf("%s: call %d: got %v with %d remaining, want %v with %d", tc.name, i, c, remaining[i], want, wantRemaining)
			}
		}
	}
}

// varyPath returns r, or for the wildcard case r with a path value that
// differs with i: distinct values share the wildcard's bucket.
func varyPath(r *ratelimitv3.RateLimitRequest, i int) *ratelimitv3.RateLimitRequest {
	d := r.GetDescriptors()[0]
	if len(d.GetEntries()) < 2 {
		return r
	}
	return req(r.GetDomain(), 0, desc("tenant", d.GetEntries()[0].GetValue(), "path", d.GetEntries()[1].GetValue()+strings.Repeat("x", i)))
}

// A Redis outage: AllowLocal answers from a local bucket, marked degraded;
// Deny answers UNAVAILABLE, never OVER_LIMIT.
func TestRedisOutage(t *testing.T) {
	rs := redistest.Start(t)
	rdb := rs.Client()
	t.Cleanup(func() { _ = rdb.Close() })
	l := limiter.New(redisstore.New(rdb))
	_, allow := newServer(t, l, redisConfig)
	_, deny := newServer(t, l, redisConfig, envoyrls.WithFailurePolicy(limiter.Deny))
	r := req("edge", 0, desc("remote_address", "10.0.0.1"))

	call(t, allow, r)
	rs.Kill()

	var hdr metadata.MD
	resp := call(t, allow, r, grpc.Header(&hdr))
	if resp.GetOverallCode() != ok || hdr.Get(envoyrls.DegradedHeader) == nil {
		t.Errorf("AllowLocal during outage: got %v with header %v, want OK and %s", resp.GetOverallCode(), hdr, envoyrls.DegradedHeader)
	}
	_, err := deny.ShouldRateLimit(context.Background(), r)
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Deny during outage: got %v, want UNAVAILABLE", err)
	}

	rs.Restart()
	// The limiter lets a probe through 500ms after a failure; bounded at
	// 10s.
	eventuallyOK := false
	for range 500 {
		hdr = nil
		resp, err := allow.ShouldRateLimit(context.Background(), r, grpc.Header(&hdr))
		if err == nil && hdr.Get(envoyrls.DegradedHeader) == nil {
			// Redis restarted empty: the shared bucket starts full again.
			if got := resp.GetStatuses()[0].GetLimitRemaining(); got != 4 {
				t.Errorf("after restart: got %d remaining, want 4", got)
			}
			eventuallyOK = true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !eventuallyOK {
		t.Errorf("still degraded after Redis restarted")
	}
}
