package admission_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/topdeck/resilience/admission"
	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/internal/clocktest"
	"github.com/topdeck/resilience/internal/testkit"
	"github.com/topdeck/resilience/limiter"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is an Admitter on memory stores that read one clock.
type env struct {
	clk      *clocktest.Clock
	breakers *breaker.MemoryStore
	limits   *limiter.Limiter
	adm      *admission.Admitter
}

func newEnv(t *testing.T, opts ...admission.Option) *env {
	t.Helper()
	clk := clocktest.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	e := &env{
		clk:      clk,
		breakers: breaker.NewMemoryStore(breaker.WithMemoryClock(clk.Now)),
		limits:   limiter.New(limiter.NewMemoryStore(limiter.WithMemoryClock(clk.Now)), limiter.WithClock(clk.Now)),
	}
	t.Cleanup(func() { _ = e.breakers.Close() })
	e.adm = admission.New(e.breakers, e.limits, append([]admission.Option{admission.WithClock(clk.Now)}, opts...)...)
	return e
}

var (
	settings = breaker.Settings{FailureThreshold: 1, RecoveryTimeout: time.Minute, HalfOpenMaxCalls: 1, ProbeTimeout: time.Hour}
	hourly   = limiter.Limit{MaxCalls: 1, Window: time.Hour}
)

func limited(key string, lim limiter.Limit) []limiter.Request {
	return []limiter.Request{{Key: key, Limit: lim, Cost: 1}}
}

// ctxT returns a context that ends after 10s or with t.
func ctxT(t *testing.T) context.Context { return testkit.Context(t, 10*time.Second) }

func mustDecide(t *testing.T, a *admission.Admitter, req admission.Request) admission.Decision {
	t.Helper()
	return must(t, "Decide", a.Decide, req)
}

func mustPeek(t *testing.T, a *admission.Admitter, req admission.Request) admission.Decision {
	t.Helper()
	return must(t, "Peek", a.Peek, req)
}

// must returns what call, the Admitter's method name, answers req, failing
// t on an error.
func must(t *testing.T, name string, call func(context.Context, admission.Request) (admission.Decision, error), req admission.Request) admission.Decision {
	t.Helper()
	d, err := call(ctxT(t), req)
	if err != nil {
		t.Fatalf("%s(%+v): %v", name, req, err)
	}
	return d
}

// open makes the breaker name OPEN from now on.
func (e *env) open(t *testing.T, name string) {
	t.Helper()
	if _, err := e.breakers.Reset(ctxT(t), name, settings, breaker.StateOpen); err != nil {
		t.Fatal(err)
	}
}

func TestDecideLimitOnly(t *testing.T) {
	e := newEnv(t)
	req := admission.Request{Limits: limited("k", limiter.Limit{MaxCalls: 2, Window: time.Hour})}
	for i, want := range []int64{1, 0} {
		d := mustDecide(t, e.adm, req)
		if !d.Allowed || d.Reason != admission.ReasonAllowed || d.Limit.Remaining != want || d.Degraded() {
			t.Fatalf("call %d: got %+v, want allowed with %d remaining", i, d, want)
		}
	}
	d := mustDecide(t, e.adm, req)
	if d.Allowed || d.Reason != admission.ReasonRateLimited || d.RetryAfter != 30*time.Minute {
		t.Fatalf("3rd call: got %+v, want rate limited, retry after 30m", d)
	}
	if d := mustDecide(t, e.adm, admission.Request{}); !d.Allowed {
		t.Errorf("empty request: got %+v, want allowed", d)
	}
}

func TestOpenBreakerTakesNoTokens(t *testing.T) {
	e := newEnv(t)
	e.open(t, "b")
	req := admission.Request{Circuit: &admission.Circuit{Name: "b", Settings: settings}, Limits: limited("k", limiter.Limit{MaxCalls: 2, Window: time.Hour})}
	d := mustDecide(t, e.adm, req)
	if d.Allowed || d.Reason != admission.ReasonCircuitOpen || d.RetryAfter != time.Minute || d.Breaker.State != breaker.StateOpen {
		t.Fatalf("got %+v, want CIRCUIT_OPEN for 1m", d)
	}
	if p := mustPeek(t, e.adm, admission.Request{Limits: req.Limits}); p.Limit.Remaining != 1 {
		t.Errorf("remaining after a breaker refusal: got %d, want 1 (nothing taken)", p.Limit.Remaining)
	}
}

func TestProbeReleasedWhenRateLimited(t *testing.T) {
	e := newEnv(t)
	e.open(t, "b")
	e.clk.Advance(time.Minute) // HALF_OPEN: one probe slot
	mustDecide(t, e.adm, admission.Request{Limits: limited("empty", hourly)})

	d := mustDecide(t, e.adm, admission.Request{Circuit: &admission.Circuit{Name: "b", Settings: settings}, Limits: limited("empty", hourly)})
	if d.Allowed || d.Reason != admission.ReasonRateLimited || d.Breaker.PermitID != "" || d.Breaker.State != breaker.StateHalfOpen {
		t.Fatalf("got %+v, want RATE_LIMITED in HALF_OPEN without a permit", d)
	}
	probe := mustDecide(t, e.adm, admission.Request{Circuit: &admission.Circuit{Name: "b", Settings: settings}})
	if !probe.Allowed || probe.Breaker.PermitID == "" {
		t.Fatalf("got %+v, want the probe slot free again", probe)
	}
}

// leaving cancels its context as soon as the limiter has answered: the
// caller leaves while it is held for its reservation.
type leaving struct {
	admission.Limits
	cancel context.CancelFunc
}

func (l leaving) Acquire(ctx context.Context, req limiter.Request) (limiter.Result, error) {
	res, err := l.Limits.Acquire(ctx, req)
	l.cancel()
	return res, err
}

func TestReservationHoldsTheCall(t *testing.T) {
	e := newEnv(t)
	lim := limiter.Limit{MaxCalls: 100, Window: time.Second, Burst: 1} // a token per 10ms
	mustDecide(t, e.adm, admission.Request{Limits: limited("r", lim)})
	d := mustDecide(t, e.adm, admission.Request{Limits: limited("r", lim), MaxWait: time.Second})
	if !d.Allowed || d.Waited != 10*time.Millisecond {
		t.Fatalf("got %+v, want allowed after being held 10ms", d)
	}
	// Without MaxWait, the same call is refused at once.
	if d := mustDecide(t, e.adm, admission.Request{Limits: limited("r", lim)}); d.Allowed || d.RetryAfter != 20*time.Millisecond {
		t.Fatalf("got %+v, want refused, retry after 20ms", d)
	}
}

func TestCallerWhoLeavesGivesBack(t *testing.T) {
	e := newEnv(t)
	e.open(t, "b")
	e.clk.Advance(time.Minute)
	lim := limiter.Limit{MaxCalls: 1, Window: time.Hour, Burst: 1}
	mustDecide(t, e.adm, admission.Request{Limits: limited("leave", lim)})
	before := mustPeek(t, e.adm, admission.Request{Limits: limited("leave", lim)})

	ctx, cancel := context.WithCancel(context.Background()) // no deadline: the 1h reservation is made
	defer cancel()
	adm := admission.New(e.breakers, leaving{e.limits, cancel})
	_, err := adm.Decide(ctx, admission.Request{Circuit: &admission.Circuit{Name: "b", Settings: settings}, Limits: limited("leave", lim), MaxWait: 2 * time.Hour})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	after := mustPeek(t, e.adm, admission.Request{Circuit: &admission.Circuit{Name: "b", Settings: settings}, Limits: limited("leave", lim)})
	if after.Limit.RetryAfter != before.Limit.RetryAfter {
		t.Errorf("retry_after %v after the caller left, %v before: its token was not given back", after.Limit.RetryAfter, before.Limit.RetryAfter)
	}
	if !after.Breaker.Allowed {
		t.Errorf("breaker after the caller left: got %+v, want its probe slot free", after.Breaker)
	}
}

func TestNeverReservePastTheDeadline(t *testing.T) {
	e := newEnv(t, admission.WithDeadlineMargin(5*time.Millisecond))
	mustDecide(t, e.adm, admission.Request{Limits: limited("dl", hourly)})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := e.adm.Decide(ctx, admission.Request{Limits: limited("dl", hourly), MaxWait: 2 * time.Hour})
	if err != nil || d.Allowed || d.RetryAfter != time.Hour {
		t.Fatalf("got %+v, %v; want refused at once with retry after 1h", d, err)
	}
}

func TestPeekChangesNothing(t *testing.T) {
	e := newEnv(t)
	req := admission.Request{Circuit: &admission.Circuit{Name: "p", Settings: settings}, Limits: limited("p", limiter.Limit{MaxCalls: 2, Window: time.Hour})}
	for i := range 3 {
		d := mustPeek(t, e.adm, req)
		if !d.Allowed || d.Limit.Remaining != 1 || d.Breaker.State != breaker.StateClosed {
			t.Fatalf("peek %d: got %+v, want allowed with 1 remaining (nothing taken)", i, d)
		}
	}
	e.open(t, "p")
	d := mustPeek(t, e.adm, req)
	if d.Allowed || d.Reason != admission.ReasonCircuitOpen || d.RetryAfter != time.Minute || d.Breaker.State != breaker.StateOpen {
		t.Fatalf("peek on an open breaker: got %+v, want CIRCUIT_OPEN for 1m", d)
	}
	e.clk.Advance(time.Minute)
	if d := mustPeek(t, e.adm, req); !d.Allowed {
		t.Fatalf("peek once the probe time came: got %+v, want allowed", d)
	}
	probe := mustDecide(t, e.adm, admission.Request{Circuit: &admission.Circuit{Name: "p", Settings: settings}})
	if probe.Breaker.PermitID == "" {
		t.Fatalf("got %+v, want a probe", probe)
	}
	d = mustPeek(t, e.adm, req)
	if d.Allowed || d.Reason != admission.ReasonCircuitOpen || d.RetryAfter != time.Hour {
		t.Fatalf("peek with the probe slot taken: got %+v, want CIRCUIT_OPEN until the lease ends (1h)", d)
	}
}

func TestWouldWait(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	one := breaker.Settings{HalfOpenMaxCalls: 1}
	tests := []struct {
		name string
		st   breaker.Status
		want time.Duration
	}{
		{"closed", breaker.Status{State: breaker.StateClosed}, 0},
		{"open", breaker.Status{State: breaker.StateOpen, NextProbeAt: now.Add(time.Second)}, time.Second},
		{"open, probe time passed", breaker.Status{State: breaker.StateOpen, NextProbeAt: now.Add(-time.Second)}, 0},
		{"half open, free slot", breaker.Status{State: breaker.StateHalfOpen, NextProbeAt: now.Add(time.Second), Settings: one}, 0},
		{"half open, full", breaker.Status{State: breaker.StateHalfOpen, ProbesInFlight: 1, NextProbeAt: now.Add(time.Second), Settings: one}, time.Second},
		{"half open, full, lease ending", breaker.Status{State: breaker.StateHalfOpen, ProbesInFlight: 1, NextProbeAt: now, Settings: one}, time.Millisecond},
	}
	for _, tt := range tests {
		if got := admission.WouldWait(tt.st, now); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

// failingRelease is a breaker store whose Release fails.
type failingRelease struct{ *breaker.MemoryStore }

var errRelease = errors.New("release failed")

func (failingRelease) Release(context.Context, string, string) error { return errRelease }

func TestReleaseErrorIsReportedNotReturned(t *testing.T) {
	e := newEnv(t)
	e.open(t, "b")
	e.clk.Advance(time.Minute)
	mustDecide(t, e.adm, admission.Request{Limits: limited("k", hourly)})
	var got []string
	adm := admission.New(failingRelease{e.breakers}, e.limits, admission.WithReleaseErrorHandler(func(_ context.Context, name string, err error) {
		if errors.Is(err, errRelease) {
			got = append(got, name)
		}
	}))
	d := mustDecide(t, adm, admission.Request{Circuit: &admission.Circuit{Name: "b", Settings: settings}, Limits: limited("k", hourly)})
	if d.Allowed || d.Reason != admission.ReasonRateLimited || d.Breaker.PermitID != "" {
		t.Fatalf("got %+v, want RATE_LIMITED without a permit", d)
	}
	if len(got) != 1 || got[0] != "b" {
		t.Errorf("release errors reported: got %v, want one for b", got)
	}
}

func TestErrors(t *testing.T) {
	e := newEnv(t)
	two := append(limited("a", hourly), limited("b", hourly)...)
	single := admission.New(e.breakers, struct{ admission.Limits }{e.limits}) // no MultiLimits
	if _, err := single.Decide(ctxT(t), admission.Request{Limits: two}); !errors.Is(err, admission.ErrUnsupported) {
		t.Errorf("two limits without MultiLimits: got %v, want ErrUnsupported", err)
	}
	if _, err := single.Peek(ctxT(t), admission.Request{Limits: two}); !errors.Is(err, admission.ErrUnsupported) {
		t.Errorf("peek of two limits without MultiLimits: got %v, want ErrUnsupported", err)
	}
	bad := []limiter.Request{{Key: "k", Limit: limiter.Limit{MaxCalls: 0, Window: time.Second}, Cost: 1}}
	if _, err := e.adm.Decide(ctxT(t), admission.Request{Limits: bad}); !errors.Is(err, limiter.ErrInvalidArgument) {
		t.Errorf("bad limit: got %v, want limiter.ErrInvalidArgument", err)
	}
	if _, err := e.adm.Decide(ctxT(t), admission.Request{Circuit: &admission.Circuit{Name: "b", Settings: breaker.Settings{FailureThreshold: -1}}}); !errors.Is(err, breaker.ErrInvalidSettings) {
		t.Errorf("bad settings: got %v, want breaker.ErrInvalidSettings", err)
	}
}
