package server

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/topdeck/resilience/config"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/internal/redistest"
	"github.com/topdeck/resilience/internal/testkit"
)

// BenchmarkTenantIsolation measures what a flooding tenant costs a modest
// one, on TCP loopback and one private redis-server: tenant B calls Acquire
// (allowed, Redis decides every call) one call at a time, 500 calls per
// second, first on an idle server, then while tenant A floods Acquire from
// 32 concurrent callers on 4 connections of its own.
//
//   - Limited: A has requests_per_second 1000 (the service's per-tenant
//     rate), so its calls above the rate are held in process for their
//     turn (up to max_request_wait, 100 ms; then RESOURCE_EXHAUSTED) before
//     they reach Redis: 32 closed-loop callers are paced to the rate once
//     the burst (request_burst, twice the rate by default) is spent, about
//     1,900 calls/s over a 2 s phase, and none is refused;
//   - Unlimited: A's rate is far above what the server can do, for
//     contrast.
//
// It reports B's p99 idle, under each flood, and their ratio (the goal:
// under 2 with the limit), A's calls per second and A's refused share.
//
// Run: go test -run '^$' -bench TenantIsolation -benchtime 1x -count 3 ./server/
func BenchmarkTenantIsolation(b *testing.B) {
	rs := redistest.Start(b)
	cfg, err := config.Parse("bench.yaml", []byte(`
auth:
  principals:
    - {name: a, tenant: a, roles: [caller], token_sha256: `+sha("ta")+`}
    - {name: u, tenant: u, roles: [caller], token_sha256: `+sha("tu")+`}
    - {name: b, tenant: b, roles: [caller], token_sha256: `+sha("tb")+`}
  tenants:
    a: {requests_per_second: 1000}
    u: {requests_per_second: 100000000}
    b: {requests_per_second: 100000}
`))
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	build := func(c *config.Config) (*Backends, error) { return NewBackends(c, redisStores(c, rs.Client()), log) }
	backends, err := build(cfg)
	if err != nil {
		b.Fatal(err)
	}
	tenants := NewTenants(cfg, build)
	srv := New(cfg, backends, WithLogger(log), WithTenants(tenants))
	b.Cleanup(func() {
		_ = tenants.Close()
		_ = backends.Close()
	})
	lis := testkit.Listen(b)
	testkit.Serve(b, lis, srv.Serve, srv.GRPC().Stop)
	dial := func() resiliencev1.ResilienceServiceClient {
		return resiliencev1.NewResilienceServiceClient(testkit.Dial(b, lis.Addr().String()))
	}
	limit := &resiliencev1.RateLimit{MaxCalls: 1 << 30, TimeWindow: durationpb.New(time.Second)}
	acquire := func(c resiliencev1.ResilienceServiceClient, ctx context.Context, key string) error {
		_, err := c.Acquire(ctx, &resiliencev1.AcquireRequest{Key: key, Limit: limit})
		return err
	}
	bConn := dial()
	bCtx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer tb")
	// B: 500 calls/s, one at a time, for samples calls; its p99.
	const samples = 1000
	measure := func() time.Duration {
		lat := make([]time.Duration, 0, samples)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for range samples {
			<-tick.C
			start := time.Now()
			if err := acquire(bConn, bCtx, "b-key"); err != nil {
				b.Fatalf("B's Acquire: %v", err)
			}
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		return lat[len(lat)*99/100]
	}
	// A: 32 callers on 4 connections until stop; its calls per second and
	// its refused share.
	flood := func(token string, stop <-chan struct{}) func() (float64, float64) {
		start := time.Now()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var calls, refused int
		for i := range 4 {
			c := dial()
			ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
			for j := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					n, r := 0, 0
					for {
						select {
						case <-stop:
							mu.Lock()
							calls, refused = calls+n, refused+r
							mu.Unlock()
							return
						default:
						}
						n++
						if acquire(c, ctx, "a-key-"+string(rune('a'+i*8+j))) != nil {
							r++
						}
					}
				}()
			}
		}
		return func() (float64, float64) {
			wg.Wait()
			return float64(calls) / time.Since(start).Seconds(), float64(refused) / float64(max(calls, 1))
		}
	}
	for b.Loop() {
		_ = measure() // warm up connections, scripts and the tenants' backends
		idle := measure()
		b.ReportMetric(float64(idle.Microseconds()), "idle-p99-µs")
		for _, tc := range []struct{ name, token string }{{"limited", "ta"}, {"unlimited", "tu"}} {
			stop := make(chan struct{})
			wait := flood(tc.token, stop)
			time.Sleep(100 * time.Millisecond) // let the flood ramp up
			p99 := measure()
			close(stop)
			rate, refusedShare := wait()
			b.ReportMetric(float64(p99.Microseconds()), tc.name+"-p99-µs")
			b.ReportMetric(float64(p99)/float64(idle), tc.name+"/idle")
			b.ReportMetric(rate, tc.name+"-A-calls/s")
			b.ReportMetric(refusedShare, tc.name+"-A-refused")
		}
	}
}
