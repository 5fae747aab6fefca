package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/topdeck/resilience/client"
	"github.com/topdeck/resilience/internal/redisconn"
	"github.com/topdeck/resilience/internal/redistest"
)

// pair is two Clients of one fleet: on one memory service, or on two
// replicas sharing one Redis.
type pair struct{ a, b *client.Client }

func pairs(t *testing.T) map[string]pair {
	t.Helper()
	mem := mustService(t, testConfig, nil)
	rs := redistest.Start(t)
	rdb, _, err := redisconn.Open(rs.URL(), redisconn.Timeouts{})
	if err != nil {
		t.Fatalf("redisconn.Open: %v", err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	return map[string]pair{
		"memory": {client.New(mem.conn), client.New(mem.conn)},
		"redis":  {client.New(mustService(t, testConfig, rdb).conn), client.New(mustService(t, testConfig, rdb).conn)},
	}
}

// mustThrottled checks that c sees key paused for its upstream, for at
// most max and more than min.
func mustThrottled(t *testing.T, c *client.Client, key string, lim client.Limit, lo, hi time.Duration) {
	t.Helper()
	d, err := c.Check(ctxT(t), key, lim, client.DryRun())
	if err != nil {
		t.Fatalf("Check %s: %v", key, err)
	}
	if d.Allowed || d.Reason != client.ReasonUpstreamThrottled || d.RetryAfter <= lo || d.RetryAfter > hi {
		t.Fatalf("Check %s on the other client: got %+v; want refused (upstream_throttled) with RetryAfter in (%v, %v]", key, d, lo, hi)
	}
}

// A 429 with Retry-After seen through one client's RoundTripper pauses the
// key for the other client (and replica) for that long.
func TestRoundTripperReportsRetryAfterFleetWide(t *testing.T) {
	for name, p := range pairs(t) {
		t.Run(name, func(t *testing.T) {
			var calls atomic.Int64
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				calls.Add(1)
				w.Header().Set("Retry-After", "30")
				w.WriteHeader(http.StatusTooManyRequests)
			}))
			defer up.Close()
			key, lim := "ado/"+name, client.RateLimit{MaxCalls: 100, Window: time.Minute}
			resp := getThrough(t, p.a, up, key, lim)
			if resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("status: got %d, want the upstream's 429 unchanged", resp.StatusCode)
			}
			mustThrottled(t, p.b, key, lim, 20*time.Second, 30*time.Second)
			// The other client's own calls are refused without reaching the upstream.
			err := p.b.Do(ctxT(t), "ado-breaker", func(context.Context) error { t.Error("called while paused"); return nil },
				client.WithRateLimit(key, lim))
			var rej *client.RejectedError
			if !errors.As(err, &rej) || rej.Reason != client.ReasonUpstreamThrottled || !errors.Is(err, client.ErrRateLimited) || rej.Key != key {
				t.Errorf("Do on the other client: got %v, want an upstream_throttled rejection of %s", err, key)
			}
			if n := calls.Load(); n != 1 {
				t.Errorf("upstream calls: got %d, want 1", n)
			}
		})
	}
}

// X-RateLimit-Remaining 0 with an epoch X-RateLimit-Reset on a success
// pauses the key until the reset too.
func TestRoundTripperReportsRateLimitReset(t *testing.T) {
	s := mustService(t, "", nil)
	a, b := client.New(s.conn), client.New(s.conn)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-RateLimit-Remaining", "0")
		w.Header().Set("X-RateLimit-Reset", "1e10") // read as an epoch: far away, cut by the service to 15 minutes
		_, _ = w.Write([]byte("ok"))
	}))
	defer up.Close()
	key := "reset/key"
	inline := client.RateLimit{MaxCalls: 10, Window: time.Minute}
	getThrough(t, a, up, key, inline)
	mustThrottled(t, b, key, inline, 14*time.Minute, 15*time.Minute)
}

// getThrough sends a GET to up through c's RoundTripper, routed to key under
// lim, and returns the response, its body closed.
func getThrough(t *testing.T, c *client.Client, up *httptest.Server, key string, lim client.RateLimit) *http.Response {
	t.Helper()
	hc := &http.Client{Transport: c.RoundTripper(up.Client().Transport,
		client.WithHTTPRoute(func(*http.Request) client.Route { return client.Route{Key: key, Limit: lim} }))}
	req, _ := http.NewRequestWithContext(ctxT(t), http.MethodGet, up.URL, nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp
}

// retryInfoUpstream answers every Check with err.
type retryInfoUpstream struct {
	healthpb.UnimplementedHealthServer
	err error
}

func (u *retryInfoUpstream) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	return nil, u.err
}

// The interceptors report a RESOURCE_EXHAUSTED's RetryInfo for the route's
// key: the other client sees it paused.
func TestInterceptorsReportRetryInfo(t *testing.T) {
	for name, p := range pairs(t) {
		t.Run(name, func(t *testing.T) {
			u := &retryInfoUpstream{err: retryInfoErr(t, codes.ResourceExhausted, 40*time.Second)}
			lim := client.RateLimit{MaxCalls: 100, Window: time.Minute}
			route := func(key string) client.MiddlewareOption {
				return client.WithGRPCRoute(func(string) client.Route { return client.Route{Key: key, Limit: lim, Breaker: "b/" + key} })
			}
			unary := healthpb.NewHealthClient(serveUpstream(t, u, grpc.WithUnaryInterceptor(p.a.UnaryClientInterceptor(route("unary/"+name)))))
			if _, err := unary.Check(ctxT(t), &healthpb.HealthCheckRequest{}); status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("unary: got %v, want the upstream's RESOURCE_EXHAUSTED", err)
			}
			mustThrottled(t, p.b, "unary/"+name, lim, 30*time.Second, 40*time.Second)

			ws := &watchRetryInfo{err: retryInfoErr(t, codes.Unavailable, 50*time.Second)}
			stream := healthpb.NewHealthClient(serveUpstream(t, ws, grpc.WithStreamInterceptor(p.a.StreamClientInterceptor(route("stream/"+name)))))
			if err := drain(t, stream); status.Code(err) != codes.Unavailable {
				t.Fatalf("stream: got %v, want the upstream's UNAVAILABLE", err)
			}
			mustThrottled(t, p.b, "stream/"+name, lim, 40*time.Second, 50*time.Second)
		})
	}
}

// watchRetryInfo is a health service whose Watch ends with err at once.
type watchRetryInfo struct {
	healthpb.UnimplementedHealthServer
	err error
}

func (u *watchRetryInfo) Watch(*healthpb.HealthCheckRequest, healthpb.Health_WatchServer) error {
	return u.err
}

// concurrency is a concurrency limit alone of one slot whose lease outlives
// every test: only a release frees it.
var concurrency = client.RateLimit{MaxInFlight: 1, InFlightLease: time.Hour}

// mustSlotFree checks that c can take key's slot now, and gives it back.
func mustSlotFree(t *testing.T, c *client.Client, key, after string) {
	t.Helper()
	d, err := c.Check(ctxT(t), key, concurrency)
	if err != nil || !d.Allowed || !d.HoldsSlots() {
		t.Fatalf("after %s: Check %s got %+v, %v; want its slot free", after, key, d, err)
	}
	if n, err := c.Release(ctxT(t), d); err != nil || n != 1 {
		t.Fatalf("Release: got %d, %v; want 1 slot given back", n, err)
	}
}

// mustSlotHeld checks that key's only slot is held.
func mustSlotHeld(t *testing.T, c *client.Client, key string) {
	t.Helper()
	d, err := c.Check(ctxT(t), key, concurrency)
	if err != nil || d.Allowed || d.Reason != client.ReasonConcurrencyLimited {
		t.Errorf("Check %s while a call runs: got %+v, %v; want concurrency_limited", key, d, err)
	}
}

// Do, Call and the middleware give back the slots of their calls: after
// the call returns, after it panics, after its context ends.
func TestSlotsAreReleased(t *testing.T) {
	for name, p := range pairs(t) {
		t.Run(name, func(t *testing.T) {
			key := "slots/" + name
			opt := client.WithRateLimit(key, concurrency)
			err := p.a.Do(ctxT(t), "slots-b1", func(context.Context) error { mustSlotHeld(t, p.b, key); return errUpstream }, opt)
			if !errors.Is(err, errUpstream) {
				t.Fatalf("Do: got %v, want the function's error", err)
			}
			mustSlotFree(t, p.b, key, "Do returned")

			func() {
				defer func() {
					if r := recover(); r != "boom" {
						t.Errorf("recovered %v, want the function's panic", r)
					}
				}()
				_ = p.a.Do(ctxT(t), "slots-b2", func(context.Context) error { mustSlotHeld(t, p.b, key); panic("boom") }, opt)
			}()
			mustSlotFree(t, p.b, key, "a panic")

			ctx, cancel := context.WithCancel(ctxT(t))
			_, err = client.Call(ctx, p.a, "slots-b", func(ctx context.Context) (int, error) { cancel(); return 0, ctx.Err() }, opt)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Call: got %v, want context.Canceled", err)
			}
			mustSlotFree(t, p.b, key, "the context ended")

			// Allow's done, then done again (nothing more).
			done, err := p.a.Allow(ctxT(t), "slots-b", opt)
			if err != nil {
				t.Fatal(err)
			}
			mustSlotHeld(t, p.b, key)
			done(nil)
			done(nil)
			mustSlotFree(t, p.b, key, "done")

			// The RoundTripper without a breaker releases with Release.
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { mustSlotHeld(t, p.b, key) }))
			defer up.Close()
			getThrough(t, p.a, up, key, concurrency)
			mustSlotFree(t, p.b, key, "the RoundTripper's request")

			// A panicking transport gives its slot back too.
			prt := p.a.RoundTripper(panicTransport{},
				client.WithHTTPRoute(func(*http.Request) client.Route { return client.Route{Key: key, Limit: concurrency} }))
			func() {
				defer func() { _ = recover() }()
				req, _ := http.NewRequestWithContext(ctxT(t), http.MethodGet, "http://upstream.invalid/", nil)
				_, _ = prt.RoundTrip(req)
			}()
			mustSlotFree(t, p.b, key, "a panicking transport")
		})
	}
}

type panicTransport struct{}

func (panicTransport) RoundTrip(*http.Request) (*http.Response, error) { panic("transport exploded") }

// Several limits in one call: all or nothing, the refusing key named.
func TestSeveralLimits(t *testing.T) {
	s := mustService(t, testConfig, nil)
	c := client.New(s.conn)
	ctx := ctxT(t)
	user := client.RateLimit{MaxCalls: 5, Window: time.Hour}
	org := client.RateLimit{MaxCalls: 1, Window: time.Hour}
	d, err := c.Check(ctx, "several/user-1", user, client.AndLimit("several/org", org))
	if err != nil || !d.Allowed || len(d.Limits) != 2 || d.Limits[1].Key != "several/org" {
		t.Fatalf("first call: got %+v, %v; want allowed with both limits' answers", d, err)
	}
	d, err = c.Check(ctx, "several/user-2", user, client.AndLimit("several/org", org))
	if err != nil || d.Allowed || d.LimitedBy != "several/org" || d.Reason != client.ReasonRateLimited || !d.Limits[0].Allowed || d.Limits[1].Allowed {
		t.Fatalf("second call: got %+v, %v; want refused by several/org only", d, err)
	}
	if d, _ := c.Check(ctx, "several/user-2", user, client.DryRun()); d.Remaining != 4 {
		t.Errorf("user-2 after the refusal: got %d tokens left after a dry run, want 4 (a refused call takes none)", d.Remaining)
	}
	// A policy and an inline concurrency limit, through Do.
	err = c.Do(ctx, "several-b", func(context.Context) error { return nil },
		client.WithRateLimit("several/p", client.Policy("reports")), client.AndLimit("several/slots", concurrency).WithCost(1))
	if err != nil {
		t.Fatalf("Do with a policy and a concurrency limit: %v", err)
	}
	mustSlotFree(t, c, "several/slots", "Do")
	err = c.Do(ctx, "several-b", func(context.Context) error { return nil },
		client.WithRateLimit("several/u3", user), client.AndLimit("several/org", org))
	var rej *client.RejectedError
	if !errors.As(err, &rej) || rej.Key != "several/org" || !errors.Is(err, client.ErrRateLimited) {
		t.Errorf("Do refused by the second limit: got %v, want a rejection naming several/org", err)
	}
	if _, err := c.Check(ctx, "several/x", user, client.AndLimit("", org)); !errors.Is(err, client.ErrInvalidArgument) {
		t.Errorf("AndLimit without a key: got %v, want ErrInvalidArgument", err)
	}
}

// Locally (service unreachable), several limits and concurrency slots are
// honoured per process, and slots are released.
func TestLocalSeveralLimitsAndSlots(t *testing.T) {
	lis := bufconn.Listen(1 << 10)
	_ = lis.Close()
	conn := dial(t, "passthrough:///down", grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	c := client.New(conn, client.WithCallTimeout(100*time.Millisecond))
	ctx := ctxT(t)
	org := client.RateLimit{MaxCalls: 1, Window: time.Hour}
	if d, err := c.Check(ctx, "l/u1", concurrency, client.AndLimit("l/org", org)); err != nil || !d.Allowed || !d.Local || !d.HoldsSlots() {
		t.Fatalf("local Check: got %+v, %v; want allowed locally, holding a slot", d, err)
	}
	d, err := c.Check(ctx, "l/u2", concurrency, client.AndLimit("l/org", org))
	if err != nil || d.Allowed || d.LimitedBy != "l/org" || !d.Local {
		t.Fatalf("local Check 2: got %+v, %v; want refused by l/org", d, err)
	}
	err = c.Do(ctx, "l/b", func(context.Context) error { mustSlotHeldLocal(t, c); return nil }, client.WithRateLimit("l/slot", concurrency))
	if err != nil {
		t.Fatal(err)
	}
	d, err = c.Check(ctx, "l/slot", concurrency)
	if err != nil || !d.Allowed || !d.Local {
		t.Fatalf("local slot after Do: got %+v, %v; want free", d, err)
	}
	if n, err := c.Release(ctx, d); err != nil || n != 1 {
		t.Errorf("local Release: got %d, %v; want 1", n, err)
	}
	// An upstream pause reported while the service is down holds locally.
	res, err := c.ReportUpstream(ctx, "l/paused", org, client.Upstream{RetryAfter: time.Minute})
	if err != nil || !res.Local || res.PausedFor <= 50*time.Second {
		t.Fatalf("local ReportUpstream: got %+v, %v; want a local pause of ~1m", res, err)
	}
	if d, err := c.Check(ctx, "l/paused", org); err != nil || d.Allowed || d.Reason != client.ReasonUpstreamThrottled {
		t.Errorf("Check a locally paused key: got %+v, %v; want upstream_throttled", d, err)
	}
}

func mustSlotHeldLocal(t *testing.T, c *client.Client) {
	t.Helper()
	if d, err := c.Check(context.Background(), "l/slot", concurrency); err != nil || d.Allowed || d.Reason != client.ReasonConcurrencyLimited {
		t.Errorf("local slot during Do: got %+v, %v; want concurrency_limited", d, err)
	}
}

// ReportUpstream with a remaining quota lowers the bucket, never raises it.
func TestReportUpstreamLowersTheBucket(t *testing.T) {
	s := mustService(t, testConfig, nil)
	c := client.New(s.conn)
	ctx := ctxT(t)
	lim := client.RateLimit{MaxCalls: 10, Window: time.Hour}
	res, err := c.ReportUpstream(ctx, "lower/k", lim, client.Upstream{Remaining: 3, HasRemaining: true})
	if err != nil || res.Remaining != 3 || res.PausedFor != 0 {
		t.Fatalf("ReportUpstream: got %+v, %v; want 3 tokens left, no pause", res, err)
	}
	if res, err := c.ReportUpstream(ctx, "lower/k", lim, client.Upstream{Remaining: 8, HasRemaining: true}); err != nil || res.Remaining != 3 {
		t.Errorf("ReportUpstream higher: got %+v, %v; want still 3", res, err)
	}
	if res, err := c.ReportUpstream(ctx, "lower/k", lim, client.Upstream{}); err != nil || res != (client.UpstreamResult{}) {
		t.Errorf("ReportUpstream of nothing: got %+v, %v; want nothing done", res, err)
	}
}
