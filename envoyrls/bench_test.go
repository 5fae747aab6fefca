package envoyrls_test

import (
	"context"
	"strconv"
	"testing"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/topdeck/resilience/envoyrls"
	"github.com/topdeck/resilience/limiter"
)

const benchConfig = `
- domain: edge
  descriptors:
    - key: remote_address
      rate_limit: {unit: second, requests_per_unit: 1000000000}
    - key: blocked
      rate_limit: {unit: hour, requests_per_unit: 1}
    - key: tenant
      descriptors:
        - key: path
          value: "/api/*"
          rate_limit: {unit: second, requests_per_unit: 1000000000}
`

func benchServer(b *testing.B) *envoyrls.Server {
	b.Helper()
	return mustNew(b, limiter.New(limiter.NewMemoryStore()), benchConfig)
}

func benchCalls(b *testing.B, srv *envoyrls.Server, reqs []*ratelimitv3.RateLimitRequest) {
	b.Helper()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := srv.ShouldRateLimit(ctx, reqs[i%len(reqs)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkShouldRateLimit measures the handler (no gRPC transport) over the
// memory limiter.
func BenchmarkShouldRateLimit(b *testing.B) {
	keys := make([]*ratelimitv3.RateLimitRequest, 1024)
	for i := range keys {
		keys[i] = req("edge", 0, desc("remote_address", "10.0.0."+strconv.Itoa(i)))
	}
	b.Run("one_descriptor", func(b *testing.B) {
		benchCalls(b, benchServer(b), keys)
	})
	b.Run("nested_wildcard", func(b *testing.B) {
		benchCalls(b, benchServer(b), []*ratelimitv3.RateLimitRequest{req("edge", 0, desc("tenant", "t1", "path", "/api/items"))})
	})
	b.Run("three_descriptors", func(b *testing.B) {
		benchCalls(b, benchServer(b), []*ratelimitv3.RateLimitRequest{req("edge", 0,
			desc("remote_address", "10.0.0.1"), desc("tenant", "t1", "path", "/api/items"), desc("remote_address", "10.0.0.2"))})
	})
	b.Run("over_limit", func(b *testing.B) {
		benchCalls(b, benchServer(b), []*ratelimitv3.RateLimitRequest{req("edge", 0, desc("blocked", "x"))})
	})
	b.Run("no_match", func(b *testing.B) {
		benchCalls(b, benchServer(b), []*ratelimitv3.RateLimitRequest{req("edge", 0, desc("user", "bob"))})
	})
}
