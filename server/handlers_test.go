package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/internal/testkit"
)

const handlersConfig = `
limits:
  small:
    max_calls: 2
    time_window: 1s
breakers:
  default:
    failure_threshold: 2
    recovery_timeout: 200ms
    probe_timeout: 5s
  patient:
    recovery_timeout: 1h
`

func newClients(t *testing.T) (resiliencev1.ResilienceServiceClient, resiliencev1.CacheServiceClient) {
	t.Helper()
	env := startHandlers(t)
	return resiliencev1.NewResilienceServiceClient(env.conn), resiliencev1.NewCacheServiceClient(env.conn)
}

// startHandlers starts a server with handlersConfig; its clock lets
// recovery timeouts pass without sleeping.
func startHandlers(t *testing.T) *testEnv {
	t.Helper()
	cfg := parseConfig(t, handlersConfig)
	return startServer(t, cfg)
}

func mustAcquire(t *testing.T, c resiliencev1.ResilienceServiceClient, req *resiliencev1.AcquireRequest) *resiliencev1.AcquireResponse {
	t.Helper()
	resp, err := c.Acquire(ctxT(t), req)
	if err != nil {
		t.Fatalf("Acquire(%v): %v", req, err)
	}
	return resp
}

func TestAcquireRateLimit(t *testing.T) {
	c, _ := newClients(t)
	req := &resiliencev1.AcquireRequest{Key: "api", Limit: &resiliencev1.RateLimit{MaxCalls: 3, TimeWindow: durationpb.New(time.Hour)}}
	for i := int64(2); i >= 0; i-- {
		resp := mustAcquire(t, c, req)
		if !resp.GetAllowed() || resp.GetReason() != resiliencev1.AcquireReason_ACQUIRE_REASON_ALLOWED || resp.GetRemaining() != i {
			t.Fatalf("call %d: got %v, want allowed with remaining %d", 3-i, resp, i)
		}
		if resp.GetDegraded() || resp.GetBreakerState() != resiliencev1.CircuitState_CIRCUIT_STATE_UNSPECIFIED {
			t.Errorf("got %v: want not degraded, no breaker state", resp)
		}
	}
	resp := mustAcquire(t, c, req)
	if resp.GetAllowed() || resp.GetReason() != resiliencev1.AcquireReason_ACQUIRE_REASON_RATE_LIMITED {
		t.Fatalf("4th call: got %v, want RATE_LIMITED", resp)
	}
	// One token refills every 20 minutes.
	if got := resp.GetRetryAfter().AsDuration(); got <= 19*time.Minute || got > 20*time.Minute {
		t.Errorf("retry_after: got %s, want just under 20m", got)
	}
	if got := resp.GetResetAfter().AsDuration(); got <= 59*time.Minute || got > time.Hour {
		t.Errorf("reset_after: got %s, want just under 1h", got)
	}
	// A named policy works the same way.
	pol := &resiliencev1.AcquireRequest{Key: "api2", Policy: "small"}
	mustAcquire(t, c, pol)
	mustAcquire(t, c, pol)
	if resp := mustAcquire(t, c, pol); resp.GetAllowed() {
		t.Errorf("3rd call on policy small: got allowed, want denied")
	}
}

func TestAcquireMaxWait(t *testing.T) {
	c, _ := newClients(t)
	lim := &resiliencev1.RateLimit{MaxCalls: 10, TimeWindow: durationpb.New(time.Second), Burst: 1} // a token per 100ms
	mustAcquire(t, c, &resiliencev1.AcquireRequest{Key: "w", Limit: lim})

	start := time.Now()
	resp := mustAcquire(t, c, &resiliencev1.AcquireRequest{Key: "w", Limit: lim, MaxWait: durationpb.New(time.Second)})
	if !resp.GetAllowed() || resp.GetWaited().AsDuration() <= 0 || resp.GetWaited().AsDuration() > 100*time.Millisecond {
		t.Fatalf("got %v, want allowed after waiting up to 100ms", resp)
	}
	if el := time.Since(start); el < resp.GetWaited().AsDuration() {
		t.Errorf("the server answered after %s, before the %s it says it waited", el, resp.GetWaited().AsDuration())
	}

	// A caller whose deadline comes before the tokens is told at once.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	resp, err := c.Acquire(ctx, &resiliencev1.AcquireRequest{Key: "w", Limit: lim, MaxWait: durationpb.New(10 * time.Second)})
	if err != nil {
		t.Fatalf("Acquire with a short deadline: %v, want an immediate denial", err)
	}
	if resp.GetAllowed() || resp.GetRetryAfter().AsDuration() <= 0 {
		t.Errorf("got %v, want denied with retry_after", resp)
	}
}

func TestAcquireBreakerFlow(t *testing.T) {
	env := startHandlers(t)
	c := resiliencev1.NewResilienceServiceClient(env.conn)
	ctx := ctxT(t)
	lim := &resiliencev1.RateLimit{MaxCalls: 100, TimeWindow: durationpb.New(time.Hour)}
	acq := &resiliencev1.AcquireRequest{Key: "ado", Limit: lim, Breaker: "ado"}

	first := mustAcquire(t, c, acq)
	if !first.GetAllowed() || first.GetBreakerState() != resiliencev1.CircuitState_CIRCUIT_STATE_CLOSED || first.GetBreakerGeneration() == 0 {
		t.Fatalf("got %v, want allowed, CLOSED, with a generation", first)
	}
	fail := &resiliencev1.ReportOutcomeRequest{Breaker: "ado", Outcome: resiliencev1.Outcome_OUTCOME_FAILURE, BreakerGeneration: first.GetBreakerGeneration()}
	for i := 0; i < 2; i++ {
		if _, err := c.ReportOutcome(ctx, fail); err != nil {
			t.Fatal(err)
		}
	}
	open := mustAcquire(t, c, acq)
	if open.GetAllowed() || open.GetReason() != resiliencev1.AcquireReason_ACQUIRE_REASON_CIRCUIT_OPEN || open.GetBreakerState() != resiliencev1.CircuitState_CIRCUIT_STATE_OPEN {
		t.Fatalf("after 2 failures: got %v, want CIRCUIT_OPEN", open)
	}
	if ra := open.GetRetryAfter().AsDuration(); ra <= 0 || ra > 200*time.Millisecond {
		t.Errorf("retry_after: got %s, want in (0, 200ms]", ra)
	}
	// A late outcome of the old generation is ignored.
	late, err := c.ReportOutcome(ctx, fail)
	if err != nil || !late.GetIgnored() {
		t.Errorf("stale outcome: got %v, %v; want ignored", late, err)
	}
	// The denial took no tokens: 100 - 1 left.
	peek := mustAcquire(t, c, &resiliencev1.AcquireRequest{Key: "ado", Limit: lim})
	if got := peek.GetRemaining(); got != 98 {
		t.Errorf("remaining after a breaker denial: got %d, want 98 (the denial took nothing)", got)
	}

	env.clock.Advance(250 * time.Millisecond) // recovery_timeout is 200ms here
	probe := mustAcquire(t, c, acq)
	if !probe.GetAllowed() || probe.GetBreakerState() != resiliencev1.CircuitState_CIRCUIT_STATE_HALF_OPEN || probe.GetPermitId() == "" {
		t.Fatalf("after recovery_timeout: got %v, want a HALF_OPEN probe with a permit", probe)
	}
	if again := mustAcquire(t, c, acq); again.GetAllowed() {
		t.Fatalf("second call while the probe is out: got %v, want refused", again)
	}
	ok, err := c.ReportOutcome(ctx, &resiliencev1.ReportOutcomeRequest{
		Breaker: "ado", Outcome: resiliencev1.Outcome_OUTCOME_SUCCESS,
		PermitId: probe.GetPermitId(), BreakerGeneration: probe.GetBreakerGeneration(),
	})
	if err != nil || ok.GetState() != resiliencev1.CircuitState_CIRCUIT_STATE_CLOSED {
		t.Fatalf("probe success: got %v, %v; want CLOSED", ok, err)
	}
	st, err := c.BreakerState(ctx, &resiliencev1.BreakerStateRequest{Breaker: "ado"})
	if err != nil {
		t.Fatal(err)
	}
	if s := st.GetStatus(); s.GetState() != resiliencev1.CircuitState_CIRCUIT_STATE_CLOSED || s.GetOpenedAt() == nil ||
		s.GetPolicy().GetName() != "default" || s.GetPolicy().GetFailureThreshold() != 2 || s.GetGeneration() <= first.GetBreakerGeneration() {
		t.Errorf("status: got %v, want CLOSED, opened_at set, default policy with threshold 2, a newer generation", s)
	}
}

func TestProbeReleasedWhenRateLimited(t *testing.T) {
	env := startHandlers(t)
	c := resiliencev1.NewResilienceServiceClient(env.conn)
	ctx := ctxT(t)
	if _, err := c.ResetBreaker(ctx, &resiliencev1.ResetBreakerRequest{Breaker: "b", State: resiliencev1.CircuitState_CIRCUIT_STATE_OPEN}); err != nil {
		t.Fatal(err)
	}
	env.clock.Advance(250 * time.Millisecond) // default recovery_timeout is 200ms here
	lim := &resiliencev1.RateLimit{MaxCalls: 1, TimeWindow: durationpb.New(time.Hour)}
	mustAcquire(t, c, &resiliencev1.AcquireRequest{Key: "empty", Limit: lim}) // empty the bucket
	denied := mustAcquire(t, c, &resiliencev1.AcquireRequest{Key: "empty", Limit: lim, Breaker: "b"})
	if denied.GetAllowed() || denied.GetReason() != resiliencev1.AcquireReason_ACQUIRE_REASON_RATE_LIMITED || denied.GetPermitId() != "" {
		t.Fatalf("got %v, want RATE_LIMITED without a permit", denied)
	}
	// The probe slot was given back: another caller can probe at once.
	probe := mustAcquire(t, c, &resiliencev1.AcquireRequest{Breaker: "b"})
	if !probe.GetAllowed() || probe.GetPermitId() == "" {
		t.Fatalf("got %v, want the probe slot free again", probe)
	}
}

func TestResetListWatch(t *testing.T) {
	c, _ := newClients(t)
	ctx := ctxT(t)
	watch, err := c.WatchBreakers(ctx, &resiliencev1.WatchBreakersRequest{Prefix: "svc/"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Header(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"svc/a", "svc/b", "other"} {
		if _, err := c.ResetBreaker(ctx, &resiliencev1.ResetBreakerRequest{Breaker: n, State: resiliencev1.CircuitState_CIRCUIT_STATE_OPEN}); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"svc/a", "svc/b"} {
		ev, err := watch.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if e := ev.GetEvent(); e.GetBreaker() != want || e.GetTo() != resiliencev1.CircuitState_CIRCUIT_STATE_OPEN || e.GetReason() != "reset" {
			t.Errorf("event: got %v, want %s -> OPEN by reset", e, want)
		}
	}
	page, err := c.ListBreakers(ctx, &resiliencev1.ListBreakersRequest{Prefix: "svc/", PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.GetBreakers()) != 1 || page.GetBreakers()[0].GetName() != "svc/a" || page.GetNextPageToken() == "" {
		t.Fatalf("page 1: got %v, want svc/a and a token", page)
	}
	page, err = c.ListBreakers(ctx, &resiliencev1.ListBreakersRequest{Prefix: "svc/", PageSize: 1, PageToken: page.GetNextPageToken()})
	if err != nil || len(page.GetBreakers()) != 1 || page.GetBreakers()[0].GetName() != "svc/b" {
		t.Fatalf("page 2: got %v, %v; want svc/b", page, err)
	}
	_, err = c.ListBreakers(ctx, &resiliencev1.ListBreakersRequest{PageToken: "!!not-a-token"})
	wantInvalid(t, err, "page_token")

	st, err := c.ResetBreaker(ctx, &resiliencev1.ResetBreakerRequest{Breaker: "svc/a"})
	if err != nil || st.GetStatus().GetState() != resiliencev1.CircuitState_CIRCUIT_STATE_CLOSED {
		t.Fatalf("reset to closed: got %v, %v", st, err)
	}
	if resp := mustAcquire(t, c, &resiliencev1.AcquireRequest{Breaker: "svc/a"}); !resp.GetAllowed() {
		t.Errorf("after reset to CLOSED: got %v, want allowed", resp)
	}
	if st, _ := c.BreakerState(ctx, &resiliencev1.BreakerStateRequest{Breaker: "patient"}); st.GetStatus().GetPolicy().GetName() != "patient" ||
		st.GetStatus().GetPolicy().GetRecoveryTimeout().AsDuration() != time.Hour || st.GetStatus().GetPolicy().GetFailureThreshold() != 2 {
		t.Errorf("patient policy: got %v, want its own recovery 1h and the default's threshold 2", st.GetStatus().GetPolicy())
	}
}

func TestCacheRoundTrip(t *testing.T) {
	_, c := newClients(t)
	ctx := ctxT(t)
	if resp, err := c.Set(ctx, &resiliencev1.SetRequest{Key: "q/1", Value: []byte(`{"a":1}`), Ttl: durationpb.New(time.Minute)}); err != nil || !resp.GetStored() {
		t.Fatalf("Set: %v, %v", resp, err)
	}
	for _, k := range []string{"q/2", "r/1"} {
		if _, err := c.Set(ctx, &resiliencev1.SetRequest{Key: k, Value: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.Get(ctx, &resiliencev1.GetRequest{Key: "q/1"})
	if err != nil || !got.GetFound() || string(got.GetValue()) != `{"a":1}` || got.GetTtl().AsDuration() > time.Minute || got.GetTtl().AsDuration() <= 0 {
		t.Fatalf("Get: got %v, %v; want the value with a ttl up to 1m", got, err)
	}
	if miss, _ := c.Get(ctx, &resiliencev1.GetRequest{Key: "nope"}); miss.GetFound() {
		t.Errorf("Get of a missing key: got found")
	}
	del, err := c.DeletePattern(ctx, &resiliencev1.DeletePatternRequest{Pattern: "q/*"})
	if err != nil || del.GetDeleted() != 2 {
		t.Fatalf("DeletePattern q/*: got %v, %v; want 2 deleted", del, err)
	}
	d, err := c.Delete(ctx, &resiliencev1.DeleteRequest{Keys: []string{"r/1", "gone"}})
	if err != nil || d.GetDeleted() != 1 {
		t.Fatalf("Delete: got %v, %v; want 1", d, err)
	}
	st, err := c.GetStats(ctx, &resiliencev1.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetHits() != 1 || st.GetMisses() != 1 || st.GetSets() != 3 || st.GetDeletes() != 3 || st.GetHitRatio() != 0.5 || st.GetKeys() != 0 {
		t.Errorf("stats: got %v, want 1 hit, 1 miss, 3 sets, 3 deletes, ratio 0.5, 0 keys", st)
	}
}

func TestConcurrentAcquireIsExact(t *testing.T) {
	c, _ := newClients(t)
	lim := &resiliencev1.RateLimit{MaxCalls: 50, TimeWindow: durationpb.New(time.Hour)}
	allowed, errs := testkit.CountParallel(16, 10, func(int) (int, error) {
		resp, err := c.Acquire(context.Background(), &resiliencev1.AcquireRequest{Key: "hot", Limit: lim})
		if resp.GetAllowed() {
			return 1, err
		}
		return 0, err
	})
	for _, err := range errs {
		t.Error(err)
	}
	if allowed != 50 {
		t.Errorf("160 calls against a burst of 50 in an hour: %d allowed, want exactly 50", allowed)
	}
}

func TestBreakerOnlyAcquireNeedsNoLimit(t *testing.T) {
	c, _ := newClients(t)
	resp := mustAcquire(t, c, &resiliencev1.AcquireRequest{Breaker: "only"})
	if !resp.GetAllowed() || resp.GetRemaining() != 0 || resp.GetBreakerState() != resiliencev1.CircuitState_CIRCUIT_STATE_CLOSED {
		t.Errorf("got %v, want allowed by a CLOSED breaker", resp)
	}
	_, err := c.Acquire(ctxT(t), &resiliencev1.AcquireRequest{Breaker: strings.Repeat("x", 300)})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("got %v, want INVALID_ARGUMENT", err)
	}
}

func TestAcquireDryRunChangesNothing(t *testing.T) {
	c, _ := newClients(t)
	ctx := ctxT(t)
	lim := &resiliencev1.RateLimit{MaxCalls: 2, TimeWindow: durationpb.New(time.Hour)}
	for i := 0; i < 5; i++ {
		resp := mustAcquire(t, c, &resiliencev1.AcquireRequest{Key: "dry", Limit: lim, DryRun: true, Breaker: "dryb"})
		if !resp.GetAllowed() || resp.GetRemaining() != 1 || resp.GetBreakerState() != resiliencev1.CircuitState_CIRCUIT_STATE_CLOSED {
			t.Fatalf("dry run %d: got %v, want allowed with remaining 1 (nothing taken)", i, resp)
		}
	}
	mustAcquire(t, c, &resiliencev1.AcquireRequest{Key: "dry", Limit: lim})
	mustAcquire(t, c, &resiliencev1.AcquireRequest{Key: "dry", Limit: lim})
	if resp := mustAcquire(t, c, &resiliencev1.AcquireRequest{Key: "dry", Limit: lim, DryRun: true}); resp.GetAllowed() || resp.GetRetryAfter().AsDuration() <= 0 {
		t.Errorf("dry run on an empty bucket: got %v, want denied with retry_after", resp)
	}
	if _, err := c.ResetBreaker(ctx, &resiliencev1.ResetBreakerRequest{Breaker: "dryb", State: resiliencev1.CircuitState_CIRCUIT_STATE_OPEN}); err != nil {
		t.Fatal(err)
	}
	resp := mustAcquire(t, c, &resiliencev1.AcquireRequest{Breaker: "dryb", DryRun: true})
	if resp.GetAllowed() || resp.GetReason() != resiliencev1.AcquireReason_ACQUIRE_REASON_CIRCUIT_OPEN || resp.GetRetryAfter().AsDuration() <= 0 {
		t.Errorf("dry run on an open breaker: got %v, want CIRCUIT_OPEN with retry_after", resp)
	}
}

func TestMetricsAfterTraffic(t *testing.T) {
	cfg := parseConfig(t, handlersConfig)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	b := memoryBackends(t, cfg, WithBackendMetrics(m))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	env := startServerWith(t, cfg, b)
	c := resiliencev1.NewResilienceServiceClient(env.conn)
	cc := resiliencev1.NewCacheServiceClient(env.conn)

	mustAcquire(t, c, &resiliencev1.AcquireRequest{Key: "secret-customer-key", Policy: "small"})
	mustAcquire(t, c, &resiliencev1.AcquireRequest{Key: "k", Limit: &resiliencev1.RateLimit{MaxCalls: 1, TimeWindow: durationpb.New(time.Hour)}})
	mustAcquire(t, c, &resiliencev1.AcquireRequest{Key: "k", Limit: &resiliencev1.RateLimit{MaxCalls: 1, TimeWindow: durationpb.New(time.Hour)}})
	select { // the state cache follows the events: the transition reaches the metrics
	case <-b.Following():
	case <-ctxT(t).Done():
		t.Fatal("the backends never followed the breaker events")
	}
	if _, err := c.ResetBreaker(ctxT(t), &resiliencev1.ResetBreakerRequest{Breaker: "ado", State: resiliencev1.CircuitState_CIRCUIT_STATE_OPEN}); err != nil {
		t.Fatal(err)
	}
	mustAcquire(t, c, &resiliencev1.AcquireRequest{Breaker: "ado"})
	_, _ = cc.Get(ctxT(t), &resiliencev1.GetRequest{Key: "nothing"})

	want := map[string][]string{
		`resilience_acquire_total`:             {`policy="small"`, `reason="allowed"`, `policy="inline"`, `reason="rate_limited"`, `reason="circuit_open"`, `policy="none"`, `degraded="false"`},
		`resilience_breaker_transitions_total`: {`breaker="ado"`, `from="closed"`, `to="open"`, `reason="reset"`},
		`resilience_breaker_state`:             {`breaker="ado"`, `state="open"`},
		`resilience_cache_requests_total`:      {`op="get"`, `result="miss"`},
		`resilience_config_generation`:         nil,
		`resilience_config_reloads_total`:      {`result="failure"`},
		`grpc_server_handled_total`:            {`grpc_method="Acquire"`, `grpc_code="OK"`},
		`grpc_server_handling_seconds_bucket`:  {`grpc_method="Acquire"`},
	}
	eventually(t, 2*time.Second, func() bool { return len(missingSeries(t, reg, want)) == 0 })
	if miss := missingSeries(t, reg, want); len(miss) > 0 {
		t.Errorf("missing series or labels: %v", miss)
	}
	text := gatherText(t, reg)
	if strings.Contains(text, "secret-customer-key") {
		t.Errorf("a caller's key appears in the metrics:\n%s", text)
	}
}

// A watch stream never ends on its own; Shutdown must end it rather than
// wait for its deadline, and tell the watcher to go elsewhere.
func TestShutdownEndsWatches(t *testing.T) {
	env := startServer(t, nil)
	c := resiliencev1.NewResilienceServiceClient(env.conn)
	watch, err := c.WatchBreakers(ctxT(t), &resiliencev1.WatchBreakersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Header(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	env.srv.Shutdown(ctx)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Shutdown with an open watch took %s: it waited for the stream", d)
	}
	if _, err := watch.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("watch after Shutdown: got %v, want UNAVAILABLE", err)
	}
}

// TestAcquireGivesBackWhenCallerLeaves reproduces the ghost charge of the
// reliability report: a caller who gave up while the server held it for a
// reservation left its tokens taken. They come back now, when nothing was
// taken after them.
func TestAcquireGivesBackWhenCallerLeaves(t *testing.T) {
	c, _ := newClients(t)
	lim := &resiliencev1.RateLimit{MaxCalls: 1, TimeWindow: durationpb.New(10 * time.Second), Burst: 1}
	mustAcquire(t, c, &resiliencev1.AcquireRequest{Key: "leave", Limit: lim})
	before := mustAcquire(t, c, &resiliencev1.AcquireRequest{Key: "leave", Limit: lim, DryRun: true})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Acquire(ctx, &resiliencev1.AcquireRequest{Key: "leave", Limit: lim, MaxWait: durationpb.New(20 * time.Second)})
		done <- err
	}()
	// Cancel once the server holds the call: a dry run then shows its
	// reservation taken (the bucket must end as it was either way).
	for i := 0; i < 500; i++ {
		if now := mustAcquire(t, c, &resiliencev1.AcquireRequest{Key: "leave", Limit: lim, DryRun: true}); now.GetRetryAfter().AsDuration() > before.GetRetryAfter().AsDuration() {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled Acquire: got %v, want CANCELLED", err)
	}
	var after *resiliencev1.AcquireResponse
	for i := 0; i < 100; i++ { // the give-back runs as the handler returns
		after = mustAcquire(t, c, &resiliencev1.AcquireRequest{Key: "leave", Limit: lim, DryRun: true})
		if after.GetRetryAfter().AsDuration() <= before.GetRetryAfter().AsDuration() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("retry_after %v after the caller left, %v before its reservation: its token was not given back",
		after.GetRetryAfter().AsDuration(), before.GetRetryAfter().AsDuration())
}
