package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/client"
	"github.com/topdeck/resilience/client/retry"
	"github.com/topdeck/resilience/correlation"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var errUpstream = errors.New("upstream exploded")

// newTestClient starts a service on testConfig and returns it, a client of
// it and a context that ends with t.
func newTestClient(t *testing.T) (*service, *client.Client, context.Context) {
	t.Helper()
	s := mustService(t, testConfig, nil)
	return s, client.New(s.conn), ctxT(t)
}

// wantReported checks that the service got want ReportOutcome calls; why,
// when set, follows the count in the message.
func wantReported(t *testing.T, s *service, want int, why string) {
	t.Helper()
	if got := s.Calls(resiliencev1.ResilienceService_ReportOutcome_FullMethodName); got != want {
		t.Errorf("ReportOutcome calls: got %d, want %d%s", got, want, why)
	}
}

func TestCheck(t *testing.T) {
	_, c, ctx := newTestClient(t)
	lim := client.RateLimit{MaxCalls: 2, Window: time.Minute}
	for i, want := range []bool{true, true, false} {
		d, err := c.Check(ctx, "check/a", lim)
		if err != nil {
			t.Fatalf("Check %d: %v", i, err)
		}
		if d.Allowed != want || d.Local {
			t.Errorf("Check %d: got allowed=%v local=%v, want allowed=%v local=false", i, d.Allowed, d.Local, want)
		}
		if !want && (d.RetryAfter <= 0 || d.Reason != client.ReasonRateLimited) {
			t.Errorf("Check %d: got %+v, want a rate-limited decision with RetryAfter > 0", i, d)
		}
	}
	// DryRun takes nothing.
	d, err := c.Check(ctx, "check/b", lim, client.DryRun())
	if err != nil || !d.Allowed || d.Remaining != 1 {
		t.Errorf("Check DryRun: got %+v, %v; want allowed with 1 remaining", d, err)
	}
	// Named policies.
	for i, want := range []bool{true, true, false} {
		d, err := c.Check(ctx, "check/p", client.Policy("reports"))
		if err != nil || d.Allowed != want {
			t.Errorf("Check policy %d: got %v, %v; want allowed=%v", i, d.Allowed, err, want)
		}
	}
	// Errors the service answers are returned as they are, never decided
	// locally.
	if _, err := c.Check(ctx, "check/p", client.Policy("nope")); status.Code(err) != codes.NotFound {
		t.Errorf("unknown policy: got %v, want NOT_FOUND", err)
	}
	if _, err := c.Check(ctx, "check/p", client.RateLimit{MaxCalls: 0, Window: time.Second}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad limit: got %v, want INVALID_ARGUMENT", err)
	}
	if _, err := c.Check(ctx, "check/p", nil); !errors.Is(err, client.ErrInvalidArgument) {
		t.Errorf("nil limit: got %v, want ErrInvalidArgument", err)
	}
}

func TestWait(t *testing.T) {
	s := mustService(t, "", nil)
	c := client.New(s.conn)
	lim := client.RateLimit{MaxCalls: 20, Window: time.Second, Burst: 1} // a token every 50ms
	ctx := ctxT(t)
	if _, err := c.Wait(ctx, "wait/a", lim); err != nil {
		t.Fatalf("Wait 1: %v", err)
	}
	d, err := c.Wait(ctx, "wait/a", lim)
	if err != nil || !d.Allowed {
		t.Fatalf("Wait 2: got %+v, %v; want allowed", d, err)
	}
	if d.Waited <= 0 {
		t.Errorf("Wait 2: got Waited %v, want > 0 (the bucket was empty)", d.Waited)
	}

	// A token that cannot come before the bound is refused at once.
	slow := client.RateLimit{MaxCalls: 1, Window: time.Hour}
	if _, err := c.Wait(ctx, "wait/slow", slow); err != nil {
		t.Fatalf("Wait slow 1: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	d, err = c.Wait(short, "wait/slow", slow)
	var rej *client.RejectedError
	if !errors.As(err, &rej) || !errors.Is(err, client.ErrRateLimited) || rej.RetryAfter < 50*time.Minute {
		t.Fatalf("Wait past the deadline: got %+v, %v; want a *RejectedError matching ErrRateLimited with RetryAfter ~1h", d, err)
	}
	if short.Err() != nil {
		t.Errorf("Wait past the deadline: it waited until the deadline, want an immediate answer")
	}
	if got, ok := retry.RetryAfter(err); !ok || got != rej.RetryAfter {
		t.Errorf("retry.RetryAfter(rejection): got %v, %v; want %v, true", got, ok, rej.RetryAfter)
	}
	if _, err := c.Wait(ctx, "wait/slow", slow, client.MaxWait(10*time.Millisecond)); !errors.Is(err, client.ErrRateLimited) {
		t.Errorf("Wait with MaxWait: got %v, want ErrRateLimited", err)
	}
}

func TestDoOpensBreaker(t *testing.T) {
	s, c, ctx := newTestClient(t)
	calls := 0
	fail := func(context.Context) error { calls++; return errUpstream }
	for i := range 2 {
		if err := c.Do(ctx, "do/a", fail); !errors.Is(err, errUpstream) {
			t.Fatalf("Do %d: got %v, want errUpstream", i, err)
		}
	}
	err := c.Do(ctx, "do/a", fail)
	var rej *client.RejectedError
	if !errors.Is(err, client.ErrOpen) || !errors.As(err, &rej) {
		t.Fatalf("Do after 2 failures: got %v, want ErrOpen", err)
	}
	if rej.Breaker != "do/a" || rej.RetryAfter <= 0 || rej.RetryAfter > time.Minute || rej.Local {
		t.Errorf("rejection: got %+v, want breaker do/a, RetryAfter in (0, 1m], not local", rej)
	}
	if calls != 2 {
		t.Errorf("upstream calls: got %d, want 2 (the open breaker short-circuits)", calls)
	}
	wantReported(t, s, 2, "")
}

func TestCallerErrorsAndCancellationsDoNotCount(t *testing.T) {
	s, c, ctx := newTestClient(t)
	for range 5 {
		err := c.Do(ctx, "do/caller", func(context.Context) error { return status.Error(codes.InvalidArgument, "bad") })
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("Do: got %v, want the InvalidArgument error", err)
		}
		err = c.Do(ctx, "do/caller", func(context.Context) error { return context.Canceled })
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Do: got %v, want context.Canceled", err)
		}
	}
	if err := c.Do(ctx, "do/caller", func(context.Context) error { return nil }); err != nil {
		t.Errorf("Do after caller errors: got %v, want nil (breaker closed)", err)
	}
	// Only the InvalidArgument outcomes (as successes) and the last call
	// were reported; cancellations were not.
	wantReported(t, s, 6, "")
}

func TestFailureClassifier(t *testing.T) {
	s := mustService(t, testConfig, nil)
	errBenign := errors.New("benign")
	c := client.New(s.conn, client.WithFailureClassifier(func(err error) bool { return !errors.Is(err, errBenign) }))
	ctx := ctxT(t)
	for range 4 {
		_ = c.Do(ctx, "do/class", func(context.Context) error { return errBenign })
	}
	if err := c.Do(ctx, "do/class", func(context.Context) error { return nil }); err != nil {
		t.Errorf("Do after benign errors: got %v, want nil", err)
	}
}

func TestAllowTwoStep(t *testing.T) {
	s, c, ctx := newTestClient(t)
	for range 2 {
		done, err := c.Allow(ctx, "allow/a")
		if err != nil {
			t.Fatalf("Allow: %v", err)
		}
		done(errUpstream)
		done(errUpstream) // a second call does nothing
	}
	if _, err := c.Allow(ctx, "allow/a"); !errors.Is(err, client.ErrOpen) {
		t.Errorf("Allow after 2 failures: got %v, want ErrOpen", err)
	}
	wantReported(t, s, 2, " (done is idempotent)")
	// A breaker and a rate limit in one decision.
	lim := client.RateLimit{MaxCalls: 1, Window: time.Hour}
	done, err := c.Allow(ctx, "allow/b", client.WithRateLimit("allow/b", lim))
	if err != nil {
		t.Fatalf("Allow with limit: %v", err)
	}
	done(nil)
	if _, err := c.Allow(ctx, "allow/b", client.WithRateLimit("allow/b", lim)); !errors.Is(err, client.ErrRateLimited) {
		t.Errorf("Allow with an empty bucket: got %v, want ErrRateLimited", err)
	}
}

func TestCorrelationIDSent(t *testing.T) {
	s := mustService(t, "", nil)
	c := client.New(s.conn)
	ctx := correlation.NewContext(ctxT(t), "req-42")
	if _, err := c.Check(ctx, "corr", client.RateLimit{MaxCalls: 5, Window: time.Second}); err != nil {
		t.Fatal(err)
	}
	_ = c.Do(ctx, "corr", func(context.Context) error { return nil })
	if _, err := c.Cache().Get(ctx, "corr"); err != nil {
		t.Fatal(err)
	}
	ids := s.IDs()
	if len(ids) != 4 {
		t.Fatalf("correlation ids received: got %v, want 4 (Acquire, Acquire, ReportOutcome, Get)", ids)
	}
	for _, id := range ids {
		if id != "req-42" {
			t.Errorf("correlation id: got %q, want %q", id, "req-42")
		}
	}
}

// upstreamHTTP is a test upstream on 127.0.0.1 answering with code (and
// Retry-After when set), counting its requests and the correlation ids.
type upstreamHTTP struct {
	*httptest.Server
	calls      atomic.Int64
	code       atomic.Int64
	retryAfter atomic.Value // string
	lastID     atomic.Value // string
}

func newUpstreamHTTP(t *testing.T, code int) *upstreamHTTP {
	t.Helper()
	u := &upstreamHTTP{}
	u.code.Store(int64(code))
	u.retryAfter.Store("")
	u.lastID.Store("")
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.calls.Add(1)
		u.lastID.Store(r.Header.Get(correlation.Header))
		if ra := u.retryAfter.Load().(string); ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		w.WriteHeader(int(u.code.Load()))
	}))
	t.Cleanup(u.Close)
	return u
}

func get(ctx context.Context, hc *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// breakerRoundTripper returns an upstream answering code and an HTTP client
// whose requests to it go through the RoundTripper of a client of a service
// on testConfig; its idle connections close when t ends.
func breakerRoundTripper(t *testing.T, code int) (*upstreamHTTP, *http.Client) {
	t.Helper()
	c := client.New(mustService(t, testConfig, nil).conn)
	up := newUpstreamHTTP(t, code)
	hc := &http.Client{Transport: c.RoundTripper(up.Client().Transport)}
	t.Cleanup(hc.CloseIdleConnections)
	return up, hc
}

func TestRoundTripperOpensBreaker(t *testing.T) {
	up, hc := breakerRoundTripper(t, http.StatusBadGateway)
	ctx := correlation.NewContext(ctxT(t), "rt-1")
	for i := range 2 {
		code, err := get(ctx, hc, up.URL)
		if err != nil || code != http.StatusBadGateway {
			t.Fatalf("request %d: got %d, %v; want 502", i, code, err)
		}
	}
	_, err := get(ctx, hc, up.URL)
	var rej *client.RejectedError
	if !errors.Is(err, client.ErrOpen) || !errors.As(err, &rej) || rej.RetryAfter <= 0 {
		t.Fatalf("request after 2 failures: got %v, want ErrOpen with RetryAfter", err)
	}
	if got := up.calls.Load(); got != 2 {
		t.Errorf("upstream calls: got %d, want 2 (short-circuited afterwards)", got)
	}
	if got := up.lastID.Load().(string); got != "rt-1" {
		t.Errorf("correlation id at the upstream: got %q, want rt-1", got)
	}
}

func TestRoundTripperSuccessAndClientErrorsKeepItClosed(t *testing.T) {
	up, hc := breakerRoundTripper(t, http.StatusNotFound)
	ctx := ctxT(t)
	for i := range 5 {
		if code, err := get(ctx, hc, up.URL); err != nil || code != http.StatusNotFound {
			t.Fatalf("request %d: got %d, %v; want 404", i, code, err)
		}
	}
}

func TestRoundTripperHonoursRetryAfter(t *testing.T) {
	up, hc := breakerRoundTripper(t, http.StatusTooManyRequests)
	up.retryAfter.Store("120")
	ctx := ctxT(t)
	if code, err := get(ctx, hc, up.URL); err != nil || code != http.StatusTooManyRequests {
		t.Fatalf("first request: got %d, %v; want 429", code, err)
	}
	_, err := get(ctx, hc, up.URL)
	var rej *client.RejectedError
	if !errors.As(err, &rej) || rej.Reason != client.ReasonUpstreamRetryAfter || !errors.Is(err, client.ErrRateLimited) {
		t.Fatalf("second request: got %v, want a rejection for the upstream's Retry-After", err)
	}
	if rej.RetryAfter <= 100*time.Second || rej.RetryAfter > 120*time.Second {
		t.Errorf("RetryAfter: got %v, want about 120s", rej.RetryAfter)
	}
	if got := up.calls.Load(); got != 1 {
		t.Errorf("upstream calls: got %d, want 1", got)
	}
}

func TestRoundTripperRateLimit(t *testing.T) {
	s := mustService(t, "", nil)
	c := client.New(s.conn)
	up := newUpstreamHTTP(t, http.StatusOK)
	rt := c.RoundTripper(up.Client().Transport, client.WithHTTPRoute(func(r *http.Request) client.Route {
		return client.Route{Key: "http/" + r.URL.Host, Limit: client.RateLimit{MaxCalls: 2, Window: time.Hour}}
	}))
	hc := &http.Client{Transport: rt}
	defer hc.CloseIdleConnections()
	ctx := ctxT(t)
	for range 2 {
		if _, err := get(ctx, hc, up.URL); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := get(ctx, hc, up.URL); !errors.Is(err, client.ErrRateLimited) {
		t.Errorf("third request: got %v, want ErrRateLimited", err)
	}
	if got := up.calls.Load(); got != 2 {
		t.Errorf("upstream calls: got %d, want 2", got)
	}
}

// upstreamGRPC is an in-process gRPC upstream (a health service) answering
// with code, counting its calls.
type upstreamGRPC struct {
	healthpb.UnimplementedHealthServer
	calls  atomic.Int64
	code   atomic.Int64
	mu     sync.Mutex
	lastID string
}

func (u *upstreamGRPC) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	u.calls.Add(1)
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(correlation.Header)) > 0 {
		u.mu.Lock()
		u.lastID = md.Get(correlation.Header)[0]
		u.mu.Unlock()
	}
	if c := codes.Code(u.code.Load()); c != codes.OK {
		return nil, status.Error(c, "upstream says no")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// breakerUpstreamGRPC serves an upstream answering code over bufconn and
// returns it and a health client whose calls to it go through the unary
// interceptor of a client of a service on testConfig.
func breakerUpstreamGRPC(t *testing.T, code codes.Code) (*upstreamGRPC, healthpb.HealthClient) {
	t.Helper()
	c := client.New(mustService(t, testConfig, nil).conn)
	u := &upstreamGRPC{}
	u.code.Store(int64(code))
	return u, healthpb.NewHealthClient(startUpstreamGRPC(t, u, c.UnaryClientInterceptor()))
}

// startUpstreamGRPC serves u over bufconn and returns a connection through
// the interceptor.
func startUpstreamGRPC(t *testing.T, u *upstreamGRPC, icpt grpc.UnaryClientInterceptor) *grpc.ClientConn {
	t.Helper()
	return serveUpstream(t, u, grpc.WithUnaryInterceptor(icpt))
}

// serveUpstream serves the health service u over bufconn and returns a
// connection to it with opts.
func serveUpstream(t *testing.T, u healthpb.HealthServer, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, u)
	testkit.Serve(t, lis, gs.Serve, gs.Stop)
	return testkit.DialBufconn(t, lis, "passthrough:///upstream", opts...)
}

func TestInterceptorOpensBreaker(t *testing.T) {
	u, hc := breakerUpstreamGRPC(t, codes.Unavailable)
	ctx := correlation.NewContext(ctxT(t), "icpt-1")
	for i := range 2 {
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
			t.Fatalf("call %d: got %v, want UNAVAILABLE from the upstream", i, err)
		}
	}
	_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
	var rej *client.RejectedError
	if !errors.Is(err, client.ErrOpen) || !errors.As(err, &rej) || rej.Breaker != "grpc.health.v1.Health" {
		t.Fatalf("call after 2 failures: got %v, want ErrOpen of breaker grpc.health.v1.Health", err)
	}
	if got := u.calls.Load(); got != 2 {
		t.Errorf("upstream calls: got %d, want 2 (short-circuited afterwards)", got)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.lastID != "icpt-1" {
		t.Errorf("correlation id at the upstream: got %q, want icpt-1", u.lastID)
	}
}

func TestInterceptorNonFailureCodes(t *testing.T) {
	_, hc := breakerUpstreamGRPC(t, codes.PermissionDenied)
	ctx := ctxT(t)
	for i := range 5 {
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("call %d: got %v, want PERMISSION_DENIED (breaker closed)", i, err)
		}
	}
}

func TestGetOrLoadSingleFlight(t *testing.T) {
	s := mustService(t, "", nil)
	c := client.New(s.conn)
	ctx := ctxT(t)
	type report struct{ Count int }
	const n = 16
	var loads atomic.Int64
	load := func(ctx context.Context) (report, error) {
		loads.Add(1)
		// Hold the load until every caller has missed the cache.
		deadline := time.Now().Add(5 * time.Second)
		for s.Calls(resiliencev1.CacheService_Get_FullMethodName) < n && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond)
		return report{Count: 42}, nil
	}
	for _, err := range testkit.Parallel(n, func(int) error {
		v, err := client.GetOrLoad(ctx, c.Cache(), "sf/key", time.Minute, load)
		if err == nil && v.Count != 42 {
			err = errors.New("wrong value")
		}
		return err
	}) {
		t.Errorf("GetOrLoad: %v", err)
	}
	if got := loads.Load(); got != 1 {
		t.Errorf("loads: got %d, want 1", got)
	}
	// The value is cached now.
	v, found, err := client.GetJSON[report](ctx, c.Cache(), "sf/key")
	if err != nil || !found || v.Count != 42 {
		t.Errorf("GetJSON: got %+v, %v, %v; want {42}, true", v, found, err)
	}
	if _, err := client.GetOrLoad(ctx, c.Cache(), "sf/key", time.Minute, load); err != nil || loads.Load() != 1 {
		t.Errorf("GetOrLoad of a cached key: got err %v, loads %d; want nil, 1", err, loads.Load())
	}
}

func TestCacheOperations(t *testing.T) {
	s := mustService(t, "", nil)
	k := client.New(s.conn).Cache()
	ctx := ctxT(t)
	if err := k.Set(ctx, "ops/a", []byte("1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := client.SetJSON(ctx, k, "ops/b", map[string]int{"x": 1}, 0); err != nil {
		t.Fatal(err)
	}
	it, err := k.Get(ctx, "ops/a")
	if err != nil || !it.Found || string(it.Value) != "1" || it.TTL <= 0 {
		t.Errorf("Get: got %+v, %v; want found 1 with a TTL", it, err)
	}
	if _, _, err := client.GetJSON[int](ctx, k, "ops/b"); err == nil {
		t.Errorf("GetJSON into the wrong type: got nil error, want a decoding error")
	}
	if n, err := k.DeletePattern(ctx, "ops/*"); err != nil || n != 2 {
		t.Errorf("DeletePattern: got %d, %v; want 2", n, err)
	}
	if n, err := k.Delete(ctx, "ops/a"); err != nil || n != 0 {
		t.Errorf("Delete: got %d, %v; want 0", n, err)
	}
	st, err := k.Stats(ctx)
	if err != nil || st.Sets != 2 || st.Hits < 1 {
		t.Errorf("Stats: got %+v, %v; want 2 sets and a hit", st, err)
	}
	if _, err := k.Get(ctx, ""); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Get empty key: got %v, want INVALID_ARGUMENT", err)
	}
}

// downTargets are resilience services that cannot be reached.
func downTargets(t *testing.T) map[string]*grpc.ClientConn {
	t.Helper()
	out := map[string]*grpc.ClientConn{}
	// A closed bufconn listener.
	lis := bufconn.Listen(1 << 10)
	_ = lis.Close()
	out["closed bufconn"] = dial(t, "passthrough:///down", grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	// A closed port on 127.0.0.1.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	out["closed port"] = dial(t, "passthrough:///"+addr)
	// A port that accepts and never answers (a hung service).
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	out["hung service"] = dial(t, "passthrough:///"+hung.Addr().String())
	t.Cleanup(func() {
		_ = hung.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return out
}

func dial(t *testing.T, target string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(target, append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func TestServiceDownDegradesLocally(t *testing.T) {
	for name, conn := range downTargets(t) {
		t.Run(name, func(t *testing.T) {
			c := client.New(conn,
				client.WithCallTimeout(100*time.Millisecond),
				client.WithLocalBreakerSettings(func(string) breaker.Settings { return breaker.Settings{FailureThreshold: 2} }),
				client.WithLocalPolicy("reports", client.RateLimit{MaxCalls: 1, Window: time.Hour}))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()

			lim := client.RateLimit{MaxCalls: 2, Window: time.Hour}
			for i, want := range []bool{true, true, false} {
				d, err := c.Check(ctx, "down/a", lim)
				if err != nil || d.Allowed != want || !d.Local || !d.Degraded {
					t.Fatalf("Check %d: got %+v, %v; want a local decision allowed=%v", i, d, err, want)
				}
			}
			if d, err := c.Check(ctx, "down/p", client.Policy("reports")); err != nil || !d.Allowed || !d.Local {
				t.Errorf("Check known policy: got %+v, %v; want allowed locally", d, err)
			}
			if d, err := c.Check(ctx, "down/p", client.Policy("reports")); err != nil || d.Allowed {
				t.Errorf("Check known policy again: got %+v, %v; want denied locally", d, err)
			}
			if d, err := c.Check(ctx, "down/u", client.Policy("unknown")); err != nil || !d.Allowed {
				t.Errorf("Check unknown policy: got %+v, %v; want admitted (fail open)", d, err)
			}

			calls := 0
			for range 2 {
				_ = c.Do(ctx, "down/b", func(context.Context) error { calls++; return errUpstream })
			}
			err := c.Do(ctx, "down/b", func(context.Context) error { calls++; return nil })
			var rej *client.RejectedError
			if !errors.As(err, &rej) || !errors.Is(err, client.ErrOpen) || !rej.Local {
				t.Errorf("Do after 2 local failures: got %v, want a local ErrOpen", err)
			}
			if calls != 2 {
				t.Errorf("upstream calls: got %d, want 2", calls)
			}

			v, err := client.GetOrLoad(ctx, c.Cache(), "down/k", time.Minute, func(context.Context) (string, error) { return "fresh", nil })
			if err != nil || v != "fresh" {
				t.Errorf("GetOrLoad: got %q, %v; want fresh", v, err)
			}
			if _, err := c.Cache().Get(ctx, "down/k"); !errors.Is(err, client.ErrServiceUnavailable) {
				t.Errorf("Get: got %v, want ErrServiceUnavailable", err)
			}
			if ctx.Err() != nil {
				t.Errorf("the calls ran into the 5s deadline: they must degrade within the call timeout")
			}
		})
	}
}

func TestServiceDownFailClosed(t *testing.T) {
	for name, conn := range downTargets(t) {
		t.Run(name, func(t *testing.T) {
			c := client.New(conn, client.WithCallTimeout(100*time.Millisecond), client.WithFailClosed(), client.WithServiceRetryInterval(0))
			ctx := ctxT(t)
			if _, err := c.Check(ctx, "x", client.RateLimit{MaxCalls: 1, Window: time.Second}); !errors.Is(err, client.ErrServiceUnavailable) {
				t.Errorf("Check: got %v, want ErrServiceUnavailable", err)
			}
			called := false
			if err := c.Do(ctx, "x", func(context.Context) error { called = true; return nil }); !errors.Is(err, client.ErrServiceUnavailable) || called {
				t.Errorf("Do: got %v (called %v), want ErrServiceUnavailable without calling", err, called)
			}
		})
	}
}

func TestServiceDownNeverPastDeadline(t *testing.T) {
	conn := downTargets(t)["hung service"]
	c := client.New(conn, client.WithCallTimeout(time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Check(ctx, "x", client.RateLimit{MaxCalls: 1, Window: time.Second})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Check with a hung service and a long call timeout: got %v, want the caller's DeadlineExceeded", err)
	}
}

func TestRetryIntervalSkipsTheService(t *testing.T) {
	s := mustService(t, "", nil)
	var invokes atomic.Int64
	conn := dial(t, "passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return s.lis.DialContext(ctx) }),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			invokes.Add(1)
			return invoker(ctx, method, req, reply, cc, opts...)
		}))
	now := time.Now()
	clock := func() time.Time { return now }
	c := client.New(conn, client.WithClock(clock), client.WithServiceRetryInterval(time.Minute))
	ctx := ctxT(t)
	lim := client.RateLimit{MaxCalls: 100, Window: time.Second}
	if d, err := c.Check(ctx, "back", lim); err != nil || d.Local {
		t.Fatalf("Check: got %+v, %v; want a service decision", d, err)
	}
	s.stop() // the service goes away
	if d, err := c.Check(ctx, "back", lim); err != nil || !d.Local {
		t.Fatalf("Check with the service gone: got %+v, %v; want a local decision", d, err)
	}
	// Within the retry interval the service is not even asked.
	before := invokes.Load()
	for range 3 {
		if d, err := c.Check(ctx, "back", lim); err != nil || !d.Local {
			t.Fatalf("Check within the retry interval: got %+v, %v; want a local decision", d, err)
		}
	}
	if got := invokes.Load(); got != before {
		t.Errorf("calls to the service within the retry interval: got %d, want 0", got-before)
	}
	now = now.Add(2 * time.Minute) // the interval has passed: ask again
	if _, err := c.Check(ctx, "back", lim); err != nil {
		t.Fatal(err)
	}
	if got := invokes.Load(); got != before+1 {
		t.Errorf("calls to the service after the retry interval: got %d, want 1", got-before)
	}
}
