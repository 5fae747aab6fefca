// Package storetest is the conformance suite that every breaker.Store must
// pass. A store's tests call Run with a constructor that builds a fresh,
// empty store on the given clock:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, now func() time.Time) breaker.Store {
//			return breaker.NewMemoryStore(breaker.WithMemoryClock(now))
//		})
//	}
//
// Time only moves when the suite advances the clock, so expectations such as
// RetryAfter are exact.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/topdeck/resilience/internal/clocktest"
	"github.com/topdeck/resilience/internal/testkit"

	"github.com/topdeck/resilience/breaker"
)

// NewStoreFunc builds a fresh, empty store whose clock is now.
type NewStoreFunc func(t *testing.T, now func() time.Time) breaker.Store

// Clock is a manual clock, safe for concurrent use: time moves only on
// Advance. The zero value is not usable; use NewClock.
type Clock = clocktest.Clock

// NewClock returns a clock reading start.
func NewClock(start time.Time) *Clock { return clocktest.New(start) }

// Epoch is where the suite's clocks start: a fixed instant with whole
// microseconds, far from the real time so that a store that reads the real
// clock fails.
var Epoch = time.Date(2031, 3, 4, 5, 6, 7, 123456000, time.UTC)

// env is one subtest's store and clock.
type env struct {
	t     *testing.T
	clock *Clock
	store breaker.Store
	ctx   context.Context
}

func newEnv(t *testing.T, newStore NewStoreFunc) *env {
	t.Helper()
	c := NewClock(Epoch)
	return &env{t: t, clock: c, store: newStore(t, c.Now), ctx: context.Background()}
}

// consecutive is the policy most cases use.
var consecutive = breaker.Settings{
	FailureThreshold: 3,
	RecoveryTimeout:  30 * time.Second,
	HalfOpenMaxCalls: 1,
	SuccessThreshold: 1,
	ProbeTimeout:     5 * time.Second,
}

// must returns v, failing the test with the call named by format and args
// if err is not nil.
func must[T any](e *env, v T, err error, format string, args ...any) T {
	e.t.Helper()
	if err != nil {
		e.t.Fatalf("%s: unexpected error: %v", fmt.Sprintf(format, args...), err)
	}
	return v
}

func (e *env) allow(name string, s breaker.Settings) breaker.Admission {
	e.t.Helper()
	a, err := e.store.Allow(e.ctx, name, s)
	return must(e, a, err, "Allow(%q)", name)
}

func (e *env) report(name string, s breaker.Settings, o breaker.Outcome, gen uint64, permit string) breaker.ReportResult {
	e.t.Helper()
	r, err := e.store.Report(e.ctx, name, s, o, gen, permit)
	return must(e, r, err, "Report(%q, %v, gen %d, permit %q)", name, o, gen, permit)
}

func (e *env) status(name string, s breaker.Settings) breaker.Status {
	e.t.Helper()
	st, err := e.store.Status(e.ctx, name, s)
	return must(e, st, err, "Status(%q)", name)
}

func (e *env) reset(name string, s breaker.Settings, to breaker.State) breaker.Status {
	e.t.Helper()
	st, err := e.store.Reset(e.ctx, name, s, to)
	return must(e, st, err, "Reset(%q, %v)", name, to)
}

// trip opens name with FailureThreshold failures and returns the generation.
func (e *env) trip(name string, s breaker.Settings) uint64 {
	e.t.Helper()
	var r breaker.ReportResult
	for i := 0; i < s.WithDefaults().FailureThreshold; i++ {
		r = e.report(name, s, breaker.OutcomeFailure, 0, "")
	}
	if r.State != breaker.StateOpen {
		e.t.Fatalf("after %d failures: got state %v, want OPEN", s.WithDefaults().FailureThreshold, r.State)
	}
	return r.Generation
}

// probe moves an open name past its recovery timeout and takes a probe.
func (e *env) probe(name string, s breaker.Settings) breaker.Admission {
	e.t.Helper()
	e.clock.Advance(s.WithDefaults().RecoveryTimeout)
	a := e.allow(name, s)
	if !a.Allowed || a.State != breaker.StateHalfOpen || a.PermitID == "" {
		e.t.Fatalf("Allow after recovery timeout: got %+v, want an allowed HALF_OPEN probe with a permit", a)
	}
	return a
}

func wantState[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

// Run runs the conformance suite against stores made by newStore.
func Run(t *testing.T, newStore NewStoreFunc) {
	testkit.Suite[*env]{
		{"FreshBreakerIsClosed", testFresh},
		{"OpensAfterThreshold", testOpensAfterThreshold},
		{"SuccessResetsCount", testSuccessResetsCount},
		{"FailureRateNeedsMinimumCalls", testFailureRate},
		{"FailureRateWindowSlides", testFailureRateWindow},
		{"OpenDeniesWithExactRetryAfter", testOpenRetryAfter},
		{"RecoveryTimeoutAdmitsOneProbe", testRecoveryAdmitsProbe},
		{"HalfOpenAdmitsExactlyMaxCallsConcurrently", testHalfOpenConcurrent},
		{"LostProbeReclaimed", testLostProbe},
		{"SuccessThresholdCloses", testSuccessThreshold},
		{"FailedProbeReopens", testFailedProbe},
		{"StaleGenerationIgnored", testStaleGeneration},
		{"PermitCountsOnce", testPermitOnce},
		{"StalePermitIgnoredWhateverGeneration", testStalePermit},
		{"HalfOpenReportWithoutPermitIgnored", testNoPermit},
		{"ReleaseFreesProbeSlot", testRelease},
		{"Reset", testReset},
		{"ChangedSettingsApplyAtOnce", testChangedSettings},
		{"ListPagesByPrefix", testList},
		{"WatchSeesTransitions", testWatch},
		{"InvalidInput", testInvalid},
	}.Run(t, func(t *testing.T) *env { return newEnv(t, newStore) })
}

func testFresh(t *testing.T, e *env) {
	// Status creates no state: a breaker never used has no generation yet.
	for i := 0; i < 2; i++ {
		st := e.status("fresh", consecutive)
		if st.State != breaker.StateClosed || st.Generation != 0 {
			t.Fatalf("Status %d of a breaker never used: got %+v, want CLOSED, generation 0", i+1, st)
		}
	}
	a := e.allow("fresh", consecutive)
	want := breaker.Admission{Allowed: true, State: breaker.StateClosed, Generation: a.Generation}
	if a != want {
		t.Fatalf("Allow: got %+v, want %+v", a, want)
	}
	// A new state starts at the store's clock in µs, so that a state made
	// after the store lost its data starts above every earlier generation.
	if now := uint64(e.clock.Now().UnixMicro()); a.Generation < now {
		t.Fatalf("generation of a new breaker: got %d, want at least the clock in µs, %d", a.Generation, now)
	}
	st := e.status("fresh", consecutive)
	wantState(t, "Status.State", st.State, breaker.StateClosed)
	wantState(t, "Status.Generation", st.Generation, a.Generation)
	wantState(t, "Status.Settings", st.Settings, consecutive.WithDefaults())
	wantState(t, "Status.NextProbeAt", st.NextProbeAt, time.Time{})
	e.clock.Advance(time.Second)
	if again := e.allow("fresh", consecutive); again.Generation != a.Generation {
		t.Fatalf("Allow a second later: got generation %d, want the same %d", again.Generation, a.Generation)
	}
	r := e.report("fresh", consecutive, breaker.OutcomeSuccess, a.Generation, "")
	if r.Ignored || r.State != breaker.StateClosed || r.Generation != a.Generation {
		t.Fatalf("Report success: got %+v, want counted, CLOSED, generation %d", r, a.Generation)
	}
	// A report is a first use too: its generation is the stored one.
	r = e.report("fresh2", consecutive, breaker.OutcomeSuccess, 0, "")
	if r.Ignored || r.Generation == 0 {
		t.Fatalf("first Report success: got %+v, want counted with a generation", r)
	}
	if st := e.status("fresh2", consecutive); st.Generation != r.Generation {
		t.Fatalf("Status after a first Report: got generation %d, want %d", st.Generation, r.Generation)
	}
}

func testOpensAfterThreshold(t *testing.T, e *env) {
	g := e.allow("b", consecutive).Generation
	for i := 1; i <= 2; i++ {
		r := e.report("b", consecutive, breaker.OutcomeFailure, g, "")
		wantState(t, fmt.Sprintf("state after failure %d", i), r.State, breaker.StateClosed)
		wantState(t, "ConsecutiveFailures", e.status("b", consecutive).ConsecutiveFailures, int64(i))
	}
	r := e.report("b", consecutive, breaker.OutcomeFailure, g, "")
	if r.Ignored || r.State != breaker.StateOpen || r.Generation != g+1 {
		t.Fatalf("third failure: got %+v, want counted, OPEN, generation %d", r, g+1)
	}
	a := e.allow("b", consecutive)
	want := breaker.Admission{State: breaker.StateOpen, Generation: g + 1, RetryAfter: consecutive.RecoveryTimeout}
	if a != want {
		t.Fatalf("Allow when open: got %+v, want %+v", a, want)
	}
	// A report for a breaker without state carries a generation it never
	// had: stale.
	if r := e.report("nostate", consecutive, breaker.OutcomeFailure, 1, ""); !r.Ignored || r.IgnoredReason != breaker.IgnoredStaleGeneration {
		t.Fatalf("FAILURE with generation 1 for a breaker without state: got %+v, want ignored (%s)", r, breaker.IgnoredStaleGeneration)
	}
}

func testSuccessResetsCount(t *testing.T, e *env) {
	seq := []breaker.Outcome{breaker.OutcomeFailure, breaker.OutcomeFailure, breaker.OutcomeSuccess, breaker.OutcomeFailure, breaker.OutcomeFailure}
	for i, o := range seq {
		if r := e.report("b", consecutive, o, 0, ""); r.State != breaker.StateClosed {
			t.Fatalf("after outcome %d (%v): got %v, want CLOSED", i, o, r.State)
		}
	}
	wantState(t, "ConsecutiveFailures", e.status("b", consecutive).ConsecutiveFailures, int64(2))
	wantState(t, "state after third failure in a row", e.report("b", consecutive, breaker.OutcomeFailure, 0, "").State, breaker.StateOpen)
}

var rate = breaker.Settings{
	Mode:                 breaker.ModeFailureRate,
	FailureRateThreshold: 0.5,
	Window:               10 * time.Second,
	MinimumCalls:         5,
	RecoveryTimeout:      30 * time.Second,
	ProbeTimeout:         5 * time.Second,
}

func testFailureRate(t *testing.T, e *env) {
	// 4 failures: 100% but below minimum_calls.
	for i := 0; i < 4; i++ {
		if r := e.report("r", rate, breaker.OutcomeFailure, 0, ""); r.State != breaker.StateClosed {
			t.Fatalf("failure %d (below minimum_calls): got %v, want CLOSED", i+1, r.State)
		}
	}
	st := e.status("r", rate)
	if st.WindowCalls != 4 || st.WindowFailures != 4 {
		t.Fatalf("window: got %d calls %d failures, want 4 and 4", st.WindowCalls, st.WindowFailures)
	}
	if r := e.report("r", rate, breaker.OutcomeFailure, 0, ""); r.State != breaker.StateOpen {
		t.Fatalf("fifth failure: got %v, want OPEN", r.State)
	}

	// 6 successes then failures: opens when failures reach 50%.
	for i := 0; i < 6; i++ {
		e.report("r2", rate, breaker.OutcomeSuccess, 0, "")
	}
	for i := 1; i <= 5; i++ {
		if r := e.report("r2", rate, breaker.OutcomeFailure, 0, ""); r.State != breaker.StateClosed {
			t.Fatalf("failure %d of %d calls: got %v, want CLOSED", i, 6+i, r.State)
		}
	}
	r := e.report("r2", rate, breaker.OutcomeFailure, 0, "")
	if r.State != breaker.StateOpen {
		t.Fatalf("6 failures of 12 calls: got %v, want OPEN", r.State)
	}
	ev := e.status("r2", rate)
	wantState(t, "window calls after opening", ev.WindowCalls, int64(0))
}

func testFailureRateWindow(t *testing.T, e *env) {
	for i := 0; i < 4; i++ {
		e.report("r", rate, breaker.OutcomeFailure, 0, "")
	}
	// Move past the window (plus one bucket): the old failures no longer count.
	e.clock.Advance(rate.Window + rate.Window/breaker.WindowBuckets)
	st := e.status("r", rate)
	if st.WindowCalls != 0 {
		t.Fatalf("window calls after the window passed: got %d, want 0", st.WindowCalls)
	}
	for i := 0; i < 4; i++ {
		if r := e.report("r", rate, breaker.OutcomeFailure, 0, ""); r.State != breaker.StateClosed {
			t.Fatalf("failure %d in a new window: got %v, want CLOSED", i+1, r.State)
		}
	}
	if r := e.report("r", rate, breaker.OutcomeFailure, 0, ""); r.State != breaker.StateOpen {
		t.Fatalf("fifth failure in the window: got %v, want OPEN", r.State)
	}
}

func testOpenRetryAfter(t *testing.T, e *env) {
	openedAt := e.clock.Now()
	gen := e.trip("b", consecutive)
	e.clock.Advance(7*time.Second + 250*time.Millisecond)
	a := e.allow("b", consecutive)
	want := breaker.Admission{State: breaker.StateOpen, Generation: gen, RetryAfter: consecutive.RecoveryTimeout - 7*time.Second - 250*time.Millisecond}
	if a != want {
		t.Fatalf("Allow when open: got %+v, want %+v", a, want)
	}
	st := e.status("b", consecutive)
	wantState(t, "OpenedAt", st.OpenedAt.UTC(), openedAt)
	wantState(t, "NextProbeAt", st.NextProbeAt.UTC(), openedAt.Add(consecutive.RecoveryTimeout))
	wantState(t, "State", st.State, breaker.StateOpen)
	// One microsecond before the recovery timeout: still denied.
	e.clock.Advance(a.RetryAfter - time.Microsecond)
	if a := e.allow("b", consecutive); a.Allowed || a.RetryAfter != time.Microsecond {
		t.Fatalf("Allow 1µs before recovery: got %+v, want denied with RetryAfter 1µs", a)
	}
}

func testRecoveryAdmitsProbe(t *testing.T, e *env) {
	gen := e.trip("b", consecutive)
	p := e.probe("b", consecutive)
	wantState(t, "probe generation", p.Generation, gen+1)
	wantState(t, "probe deadline", p.ProbeDeadline.UTC(), e.clock.Now().Add(consecutive.ProbeTimeout))
	e.clock.Advance(time.Second)
	a := e.allow("b", consecutive)
	want := breaker.Admission{State: breaker.StateHalfOpen, Generation: gen + 1, RetryAfter: consecutive.ProbeTimeout - time.Second}
	if a != want {
		t.Fatalf("second Allow in HALF_OPEN: got %+v, want %+v", a, want)
	}
	st := e.status("b", consecutive)
	wantState(t, "ProbesInFlight", st.ProbesInFlight, int64(1))
	wantState(t, "NextProbeAt", st.NextProbeAt.UTC(), p.ProbeDeadline.UTC())
}

func testHalfOpenConcurrent(t *testing.T, e *env) {
	s := consecutive
	s.HalfOpenMaxCalls = 3
	e.trip("b", s)
	e.clock.Advance(s.RecoveryTimeout)
	const callers = 40
	var (
		mu      sync.Mutex
		permits = map[string]bool{}
		denied  int
	)
	errs := testkit.Parallel(callers, func(int) error {
		a, err := e.store.Allow(e.ctx, "b", s)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if a.Allowed {
			permits[a.PermitID] = true
		} else {
			denied++
		}
		return nil
	})
	if len(errs) > 0 {
		t.Fatalf("concurrent Allow: unexpected errors: %v", errs)
	}
	if len(permits) != 3 || denied != callers-3 {
		t.Fatalf("concurrent Allow in HALF_OPEN: got %d distinct permits and %d denied, want 3 and %d", len(permits), denied, callers-3)
	}
	wantState(t, "ProbesInFlight", e.status("b", s).ProbesInFlight, int64(3))
}

func testLostProbe(t *testing.T, e *env) {
	e.trip("b", consecutive)
	lost := e.probe("b", consecutive)
	e.clock.Advance(consecutive.ProbeTimeout - time.Microsecond)
	if a := e.allow("b", consecutive); a.Allowed {
		t.Fatalf("Allow just before the lease ends: got allowed, want denied")
	}
	e.clock.Advance(time.Microsecond)
	a := e.allow("b", consecutive)
	if !a.Allowed || a.PermitID == "" || a.PermitID == lost.PermitID || a.Generation != lost.Generation {
		t.Fatalf("Allow after the lease ended: got %+v, want a new probe in generation %d", a, lost.Generation)
	}
	r := e.report("b", consecutive, breaker.OutcomeSuccess, lost.Generation, lost.PermitID)
	if !r.Ignored || r.IgnoredReason != breaker.IgnoredNoPermit {
		t.Fatalf("report of the reclaimed probe: got %+v, want ignored (%s)", r, breaker.IgnoredNoPermit)
	}
	r = e.report("b", consecutive, breaker.OutcomeSuccess, a.Generation, a.PermitID)
	if r.Ignored || r.State != breaker.StateClosed {
		t.Fatalf("report of the live probe: got %+v, want counted and CLOSED", r)
	}
}

func (e *env) setupTrip(name string, s breaker.Settings) { e.trip(name, s) }

func testSuccessThreshold(t *testing.T, e *env) {
	s := consecutive
	s.SuccessThreshold = 2
	e.setupTrip("b", s)
	p1 := e.probe("b", s)
	r := e.report("b", s, breaker.OutcomeSuccess, p1.Generation, p1.PermitID)
	if r.Ignored || r.State != breaker.StateHalfOpen || r.Generation != p1.Generation {
		t.Fatalf("first probe success: got %+v, want counted, still HALF_OPEN at generation %d", r, p1.Generation)
	}
	wantState(t, "ProbeSuccesses", e.status("b", s).ProbeSuccesses, int64(1))
	p2 := e.allow("b", s)
	if !p2.Allowed || p2.PermitID == "" {
		t.Fatalf("second probe: got %+v, want allowed", p2)
	}
	r = e.report("b", s, breaker.OutcomeSuccess, p2.Generation, p2.PermitID)
	if r.Ignored || r.State != breaker.StateClosed || r.Generation != p1.Generation+1 {
		t.Fatalf("second probe success: got %+v, want CLOSED at generation %d", r, p1.Generation+1)
	}
	if a := e.allow("b", s); !a.Allowed || a.State != breaker.StateClosed || a.PermitID != "" {
		t.Fatalf("Allow after closing: got %+v, want allowed CLOSED without permit", a)
	}
}

func testFailedProbe(t *testing.T, e *env) {
	firstOpen := e.clock.Now()
	e.setupTrip("b", consecutive)
	p := e.probe("b", consecutive)
	e.clock.Advance(time.Second)
	reopened := e.clock.Now()
	r := e.report("b", consecutive, breaker.OutcomeFailure, p.Generation, p.PermitID)
	if r.Ignored || r.State != breaker.StateOpen || r.Generation != p.Generation+1 {
		t.Fatalf("failed probe: got %+v, want OPEN at generation %d", r, p.Generation+1)
	}
	st := e.status("b", consecutive)
	if !st.OpenedAt.Equal(reopened) || st.OpenedAt.Equal(firstOpen) {
		t.Fatalf("OpenedAt after re-opening: got %v, want %v", st.OpenedAt, reopened)
	}
	a := e.allow("b", consecutive)
	if a.Allowed || a.RetryAfter != consecutive.RecoveryTimeout {
		t.Fatalf("Allow after re-opening: got %+v, want denied with RetryAfter %v", a, consecutive.RecoveryTimeout)
	}
}

func testStaleGeneration(t *testing.T, e *env) {
	slow := e.allow("b", consecutive) // a call admitted at generation 1
	gen := e.trip("b", consecutive)
	for _, g := range []uint64{slow.Generation, gen + 1, gen + 100, 1 << 53, 1 << 63, 1<<63 + 1, math.MaxUint64} {
		r := e.report("b", consecutive, breaker.OutcomeFailure, g, "")
		if !r.Ignored || r.IgnoredReason != breaker.IgnoredStaleGeneration || r.Generation != gen {
			t.Fatalf("report with generation %d at generation %d: got %+v, want ignored (%s)", g, gen, r, breaker.IgnoredStaleGeneration)
		}
	}
	// Generation 0 applies to the current generation: in OPEN it is ignored as "open".
	if r := e.report("b", consecutive, breaker.OutcomeFailure, 0, ""); !r.Ignored || r.IgnoredReason != breaker.IgnoredOpen {
		t.Fatalf("report with generation 0 when OPEN: got %+v, want ignored (%s)", r, breaker.IgnoredOpen)
	}
	// A stale success from the half-open generation does not close a re-opened breaker.
	p := e.probe("b", consecutive)
	e.report("b", consecutive, breaker.OutcomeFailure, p.Generation, p.PermitID)
	if r := e.report("b", consecutive, breaker.OutcomeSuccess, p.Generation, p.PermitID); !r.Ignored || r.State != breaker.StateOpen {
		t.Fatalf("stale probe success after re-opening: got %+v, want ignored and OPEN", r)
	}
	// Generation 0 counts in CLOSED.
	e.reset("c", consecutive, breaker.StateClosed)
	e.report("c", consecutive, breaker.OutcomeFailure, 0, "")
	wantState(t, "failures counted with generation 0", e.status("c", consecutive).ConsecutiveFailures, int64(1))
}

func testPermitOnce(t *testing.T, e *env) {
	s := consecutive
	s.HalfOpenMaxCalls = 2
	s.SuccessThreshold = 2
	e.setupTrip("b", s)
	p := e.probe("b", s)
	if r := e.report("b", s, breaker.OutcomeSuccess, p.Generation, p.PermitID); r.Ignored {
		t.Fatalf("first report of the permit: got ignored (%s), want counted", r.IgnoredReason)
	}
	r := e.report("b", s, breaker.OutcomeSuccess, p.Generation, p.PermitID)
	if !r.Ignored || r.IgnoredReason != breaker.IgnoredNoPermit || r.State != breaker.StateHalfOpen {
		t.Fatalf("second report of the same permit: got %+v, want ignored (%s), still HALF_OPEN", r, breaker.IgnoredNoPermit)
	}
	wantState(t, "ProbeSuccesses", e.status("b", s).ProbeSuccesses, int64(1))
}

// A permit carries its generation: once spent, or once its generation is
// over, an outcome with it never counts, whatever generation comes with it
// (0, "unknown", included).
func testStalePermit(t *testing.T, e *env) {
	e.setupTrip("b", consecutive)
	p := e.probe("b", consecutive)
	r := e.report("b", consecutive, breaker.OutcomeSuccess, p.Generation, p.PermitID)
	if r.Ignored || r.State != breaker.StateClosed || r.Generation != p.Generation+1 {
		t.Fatalf("probe success: got %+v, want counted, CLOSED at generation %d", r, p.Generation+1)
	}
	closed := r.Generation
	cases := []struct {
		what   string
		gen    uint64
		permit string
		reason string
	}{
		{"the spent permit, no generation", 0, p.PermitID, breaker.IgnoredStaleGeneration},
		{"the spent permit, its own generation", p.Generation, p.PermitID, breaker.IgnoredStaleGeneration},
		{"the spent permit, the current generation", closed, p.PermitID, breaker.IgnoredStaleGeneration},
		{"a never issued permit of the current generation", closed, breaker.PermitID(closed, 1), breaker.IgnoredNoPermit},
		{"a permit of a later generation", 0, breaker.PermitID(closed+1, 1), breaker.IgnoredStaleGeneration},
		{"a malformed permit", 0, "x.1", breaker.IgnoredNoPermit},
		{"a permit with a leading zero", 0, "0" + breaker.PermitID(closed, 1), breaker.IgnoredNoPermit},
	}
	for _, c := range cases {
		r := e.report("b", consecutive, breaker.OutcomeFailure, c.gen, c.permit)
		if !r.Ignored || r.IgnoredReason != c.reason || r.State != breaker.StateClosed || r.Generation != closed {
			t.Fatalf("FAILURE with %s (generation %d, permit %q) at CLOSED generation %d: got %+v, want ignored (%s)", c.what, c.gen, c.permit, closed, r, c.reason)
		}
	}
	wantState(t, "ConsecutiveFailures after stale permits", e.status("b", consecutive).ConsecutiveFailures, int64(0))

	// In the next HALF_OPEN, the old permit does not take the new probe's place.
	e.trip("b", consecutive)
	p2 := e.probe("b", consecutive)
	if r := e.report("b", consecutive, breaker.OutcomeFailure, 0, p.PermitID); !r.Ignored || r.State != breaker.StateHalfOpen {
		t.Fatalf("FAILURE with a permit of an earlier HALF_OPEN: got %+v, want ignored, still HALF_OPEN", r)
	}
	if r := e.report("b", consecutive, breaker.OutcomeSuccess, 0, p2.PermitID); r.Ignored || r.State != breaker.StateClosed {
		t.Fatalf("success of the live probe with generation 0: got %+v, want counted, CLOSED", r)
	}
}

func testNoPermit(t *testing.T, e *env) {
	e.setupTrip("b", consecutive)
	p := e.probe("b", consecutive)
	for _, permit := range []string{"", "bogus", breaker.PermitID(p.Generation, 999)} {
		r := e.report("b", consecutive, breaker.OutcomeSuccess, p.Generation, permit)
		if !r.Ignored || r.IgnoredReason != breaker.IgnoredNoPermit || r.State != breaker.StateHalfOpen {
			t.Fatalf("HALF_OPEN report with permit %q: got %+v, want ignored (%s)", permit, r, breaker.IgnoredNoPermit)
		}
	}
}

func testRelease(t *testing.T, e *env) {
	e.setupTrip("b", consecutive)
	p := e.probe("b", consecutive)
	if err := e.store.Release(e.ctx, "b", p.PermitID); err != nil {
		t.Fatalf("Release: unexpected error: %v", err)
	}
	if err := e.store.Release(e.ctx, "b", p.PermitID); err != nil {
		t.Fatalf("second Release: unexpected error: %v", err)
	}
	a := e.allow("b", consecutive)
	if !a.Allowed || a.PermitID == p.PermitID {
		t.Fatalf("Allow after Release: got %+v, want a new probe", a)
	}
	if r := e.report("b", consecutive, breaker.OutcomeFailure, p.Generation, p.PermitID); !r.Ignored {
		t.Fatalf("report of a released permit: got %+v, want ignored", r)
	}
	if err := e.store.Release(e.ctx, "never-seen", "1.1"); err != nil {
		t.Fatalf("Release on an unknown breaker: unexpected error: %v", err)
	}
}

func testReset(t *testing.T, e *env) {
	gen := e.trip("b", consecutive)
	st := e.reset("b", consecutive, breaker.StateClosed)
	if st.State != breaker.StateClosed || st.Generation != gen+1 || st.ConsecutiveFailures != 0 {
		t.Fatalf("Reset CLOSED: got %+v, want CLOSED at generation %d with no failures", st, gen+1)
	}
	if a := e.allow("b", consecutive); !a.Allowed || a.Generation != gen+1 {
		t.Fatalf("Allow after Reset CLOSED: got %+v, want allowed at generation %d", a, gen+1)
	}
	e.report("b", consecutive, breaker.OutcomeFailure, 0, "")
	st = e.reset("b", consecutive, breaker.StateOpen)
	if st.State != breaker.StateOpen || st.Generation != gen+2 || st.ConsecutiveFailures != 0 || !st.OpenedAt.Equal(e.clock.Now()) {
		t.Fatalf("Reset OPEN: got %+v, want OPEN at generation %d opened now", st, gen+2)
	}
	if a := e.allow("b", consecutive); a.Allowed || a.RetryAfter != consecutive.RecoveryTimeout {
		t.Fatalf("Allow after Reset OPEN: got %+v, want denied for %v", a, consecutive.RecoveryTimeout)
	}
	// Reset of a half-open breaker clears its probes.
	p := e.probe("b", consecutive)
	e.reset("b", consecutive, breaker.StateClosed)
	if r := e.report("b", consecutive, breaker.OutcomeFailure, p.Generation, p.PermitID); !r.Ignored {
		t.Fatalf("report of a probe from before Reset: got %+v, want ignored", r)
	}
	if _, err := e.store.Reset(e.ctx, "b", consecutive, breaker.StateHalfOpen); !errors.Is(err, breaker.ErrInvalidState) {
		t.Fatalf("Reset HALF_OPEN: got error %v, want ErrInvalidState", err)
	}
}

func testChangedSettings(t *testing.T, e *env) {
	e.setupTrip("b", consecutive)
	shorter := consecutive
	shorter.RecoveryTimeout = 10 * time.Second
	e.clock.Advance(10 * time.Second)
	if a := e.allow("b", consecutive); a.Allowed {
		t.Fatalf("Allow with the old policy after 10s: got allowed, want denied")
	}
	if a := e.allow("b", shorter); !a.Allowed || a.State != breaker.StateHalfOpen {
		t.Fatalf("Allow with recovery_timeout 10s after 10s: got %+v, want a HALF_OPEN probe", a)
	}
}

func testList(t *testing.T, e *env) {
	names := []string{"api/a1", "api/a2", "api/a3", "api/a4", "api/a5", "db/b1", "db/b2"}
	for _, n := range names {
		e.allow(n, consecutive)
	}
	e.trip("api/a3", consecutive)

	var got []string
	token := ""
	for page := 0; ; page++ {
		sts, next, err := e.store.List(e.ctx, "api/", 2, token)
		if err != nil {
			t.Fatalf("List page %d: unexpected error: %v", page, err)
		}
		if len(sts) > 2 {
			t.Fatalf("List page %d: got %d statuses, want at most 2", page, len(sts))
		}
		for _, st := range sts {
			got = append(got, st.Name)
			if st.Name == "api/a3" {
				if st.State != breaker.StateOpen || st.Settings != consecutive.WithDefaults() {
					t.Fatalf("List status of api/a3: got %+v, want OPEN with the settings in force", st)
				}
				wantState(t, "NextProbeAt", st.NextProbeAt.UTC(), e.clock.Now().Add(consecutive.RecoveryTimeout))
			} else if st.State != breaker.StateClosed {
				t.Fatalf("List status of %s: got %v, want CLOSED", st.Name, st.State)
			}
		}
		if next == "" {
			break
		}
		if page > 5 {
			t.Fatalf("List: too many pages")
		}
		token = next
	}
	if want := strings.Join(names[:5], ","); strings.Join(got, ",") != want {
		t.Fatalf("List prefix api/: got %v, want %v", got, want)
	}
	all, next, err := e.store.List(e.ctx, "", 0, "")
	if err != nil || next != "" || len(all) != len(names) {
		t.Fatalf("List all: got %d statuses, token %q, err %v; want %d, \"\", nil", len(all), next, err, len(names))
	}
	if sts, next, err := e.store.List(e.ctx, "zzz", 10, ""); err != nil || len(sts) != 0 || next != "" {
		t.Fatalf("List of an unknown prefix: got %v, %q, %v; want nothing", sts, next, err)
	}
	if _, _, err := e.store.List(e.ctx, "", 10, "!!not base64!!"); !errors.Is(err, breaker.ErrInvalidArgument) {
		t.Fatalf("List with a bad token: got error %v, want ErrInvalidArgument", err)
	}
	if _, _, err := e.store.List(e.ctx, "", -1, ""); !errors.Is(err, breaker.ErrInvalidArgument) {
		t.Fatalf("List with page size -1: got error %v, want ErrInvalidArgument", err)
	}
}

// NextEvent returns the next transition from ch (skipping ReasonResync
// markers), failing the test after timeout.
func NextEvent(t *testing.T, ch <-chan breaker.Event, timeout time.Duration) breaker.Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("watch channel closed, want an event")
			}
			if e.Reason == breaker.ReasonResync {
				continue
			}
			return e
		case <-deadline:
			t.Fatalf("no event within %v", timeout)
		}
	}
}

// WantEvent checks the fields of an event other than At against want, and At
// against at when at is not zero.
func WantEvent(t *testing.T, got breaker.Event, want breaker.Event) {
	t.Helper()
	at := want.At
	want.At = time.Time{}
	g := got
	g.At = time.Time{}
	if g != want {
		t.Fatalf("event: got %v, want %v", got, want)
	}
	if !at.IsZero() && !got.At.Equal(at) {
		t.Fatalf("event %v: got At %v, want %v", want, got, at)
	}
}

func testWatch(t *testing.T, e *env) {
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	ch, err := e.store.Watch(ctx, "w/")
	if err != nil {
		t.Fatalf("Watch: unexpected error: %v", err)
	}
	e.trip("other", consecutive) // not under the prefix
	t0 := e.clock.Now()
	g := e.allow("w/b", consecutive).Generation
	e.trip("w/b", consecutive)
	WantEvent(t, NextEvent(t, ch, 5*time.Second), breaker.Event{Name: "w/b", From: breaker.StateClosed, To: breaker.StateOpen, Generation: g + 1, Reason: breaker.ReasonFailureThreshold, At: t0})
	p := e.probe("w/b", consecutive)
	WantEvent(t, NextEvent(t, ch, 5*time.Second), breaker.Event{Name: "w/b", From: breaker.StateOpen, To: breaker.StateHalfOpen, Generation: g + 2, Reason: breaker.ReasonRecoveryTimeout, At: e.clock.Now()})
	e.report("w/b", consecutive, breaker.OutcomeFailure, p.Generation, p.PermitID)
	WantEvent(t, NextEvent(t, ch, 5*time.Second), breaker.Event{Name: "w/b", From: breaker.StateHalfOpen, To: breaker.StateOpen, Generation: g + 3, Reason: breaker.ReasonProbeFailed})
	p = e.probe("w/b", consecutive)
	NextEvent(t, ch, 5*time.Second)
	e.report("w/b", consecutive, breaker.OutcomeSuccess, p.Generation, p.PermitID)
	WantEvent(t, NextEvent(t, ch, 5*time.Second), breaker.Event{Name: "w/b", From: breaker.StateHalfOpen, To: breaker.StateClosed, Generation: g + 5, Reason: breaker.ReasonProbeSucceeded})
	e.reset("w/b", consecutive, breaker.StateOpen)
	WantEvent(t, NextEvent(t, ch, 5*time.Second), breaker.Event{Name: "w/b", From: breaker.StateClosed, To: breaker.StateOpen, Generation: g + 6, Reason: breaker.ReasonReset})
	cancel()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				return
			}
			if e.Reason != breaker.ReasonResync {
				t.Fatalf("event after the last transition: got %v, want none", e)
			}
		case <-deadline:
			t.Fatalf("watch channel not closed 5s after its context ended")
		}
	}
}

func testInvalid(t *testing.T, e *env) {
	cases := []struct {
		s     breaker.Settings
		field string
	}{
		{breaker.Settings{FailureThreshold: -1}, "failure_threshold"},
		{breaker.Settings{RecoveryTimeout: -time.Second}, "recovery_timeout"},
		{breaker.Settings{HalfOpenMaxCalls: -2}, "half_open_max_calls"},
		{breaker.Settings{SuccessThreshold: -1}, "success_threshold"},
		{breaker.Settings{ProbeTimeout: time.Microsecond}, "probe_timeout"},
		{breaker.Settings{Mode: 7}, "mode"},
		{breaker.Settings{FailureRateThreshold: 1.5}, "failure_rate_threshold"},
		{breaker.Settings{Window: time.Millisecond}, "window"},
		{breaker.Settings{MinimumCalls: -5}, "minimum_calls"},
	}
	for _, c := range cases {
		_, err := e.store.Allow(e.ctx, "b", c.s)
		if !errors.Is(err, breaker.ErrInvalidSettings) || !strings.Contains(err.Error(), c.field) {
			t.Fatalf("Allow with %+v: got error %v, want ErrInvalidSettings naming %s", c.s, err, c.field)
		}
	}
	if _, err := e.store.Allow(e.ctx, "", consecutive); !errors.Is(err, breaker.ErrInvalidName) {
		t.Fatalf("Allow with an empty name: got error %v, want ErrInvalidName", err)
	}
	if _, err := e.store.Allow(e.ctx, strings.Repeat("x", 300), consecutive); !errors.Is(err, breaker.ErrInvalidName) {
		t.Fatalf("Allow with a 300-byte name: got error %v, want ErrInvalidName", err)
	}
	if _, err := e.store.Report(e.ctx, "b", consecutive, 0, 0, ""); !errors.Is(err, breaker.ErrInvalidOutcome) {
		t.Fatalf("Report with outcome 0: got error %v, want ErrInvalidOutcome", err)
	}
}
