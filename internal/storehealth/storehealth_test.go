package storehealth_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/topdeck/resilience/internal/clocktest"
	"github.com/topdeck/resilience/internal/storehealth"
	"github.com/topdeck/resilience/internal/testkit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const interval = time.Second

func newTracker(t *testing.T) (*storehealth.Tracker, *clocktest.Clock) {
	t.Helper()
	clock := clocktest.New(time.Unix(1_700_000_000, 0))
	return storehealth.New(storehealth.WithClock(clock.Now), storehealth.WithRetryInterval(interval)), clock
}

// begin calls Begin and checks ok and whether the call is a probe.
func begin(t *testing.T, tr *storehealth.Tracker, wantOK, wantProbe bool) storehealth.Call {
	t.Helper()
	c, ok := tr.Begin()
	if ok != wantOK || c.Probe() != wantProbe {
		t.Fatalf("Begin() = (probe %v, ok %v), want (probe %v, ok %v)", c.Probe(), ok, wantProbe, wantOK)
	}
	return c
}

// failedTracker returns a tracker, and its clock, that has just seen a call
// fail: unhealthy, with the next probe due after interval.
func failedTracker(t *testing.T) (*storehealth.Tracker, *clocktest.Clock) {
	t.Helper()
	tr, clock := newTracker(t)
	begin(t, tr, true, false).End(storehealth.Failed)
	return tr, clock
}

// nextProbe advances clock by interval and begins the probe then due.
func nextProbe(t *testing.T, tr *storehealth.Tracker, clock *clocktest.Clock) storehealth.Call {
	t.Helper()
	clock.Advance(interval)
	return begin(t, tr, true, true)
}

// skipUntilDue advances clock by interval, checking that a call a
// nanosecond before its end is still skipped.
func skipUntilDue(t *testing.T, tr *storehealth.Tracker, clock *clocktest.Clock) {
	t.Helper()
	clock.Advance(interval - time.Nanosecond)
	begin(t, tr, false, false)
	clock.Advance(time.Nanosecond)
}

func wantHealthy(t *testing.T, tr *storehealth.Tracker, want bool) {
	t.Helper()
	if got := tr.Healthy(); got != want {
		t.Fatalf("Healthy() = %v, want %v", got, want)
	}
	if got := tr.State().Healthy; got != want {
		t.Fatalf("State().Healthy = %v, want %v", got, want)
	}
}

func TestHealthyLetsEveryCallThrough(t *testing.T) {
	tr, _ := newTracker(t)
	for range 100 {
		begin(t, tr, true, false).End(storehealth.Succeeded)
		begin(t, tr, true, false).End(storehealth.Unknown)
	}
	wantHealthy(t, tr, true)
	if st := tr.State(); st.Failures != 0 || st.Skipped != 0 {
		t.Errorf("State() = %+v, want no failures and nothing skipped", st)
	}
}

func TestFailureSkipsUntilAProbeSucceeds(t *testing.T) {
	tr, clock := failedTracker(t)
	wantHealthy(t, tr, false)
	for range 10 {
		begin(t, tr, false, false)
	}
	skipUntilDue(t, tr, clock)

	// One probe at a time.
	probe := begin(t, tr, true, true)
	begin(t, tr, false, false)
	// It fails: another interval.
	probe.End(storehealth.Failed)
	begin(t, tr, false, false)
	skipUntilDue(t, tr, clock)

	// It succeeds: healthy, every call goes through.
	begin(t, tr, true, true).End(storehealth.Succeeded)
	wantHealthy(t, tr, true)
	begin(t, tr, true, false)
	begin(t, tr, true, false)
	if st := tr.State(); st.Failures != 1 || st.Skipped != 14 || !st.Since.Equal(clock.Now()) {
		t.Errorf("State() = %+v, want 1 failure, 14 skipped, since now", st)
	}
}

func TestProbeWithUnknownOutcomeLetsTheNextCallerProbe(t *testing.T) {
	tr, clock := failedTracker(t)
	nextProbe(t, tr, clock).End(storehealth.Unknown)
	// No new interval: the next caller probes at once.
	begin(t, tr, true, true).End(storehealth.Succeeded)
	wantHealthy(t, tr, true)
}

func TestLostProbe(t *testing.T) {
	tr, clock := failedTracker(t)
	lost := nextProbe(t, tr, clock) // not ended in time
	skipUntilDue(t, tr, clock)
	// Presumed lost: a new probe.
	newer := begin(t, tr, true, true)
	newer.End(storehealth.Failed)
	begin(t, tr, false, false)
	// A late success of the superseded probe still shows the store
	// answers.
	lost.End(storehealth.Succeeded)
	wantHealthy(t, tr, true)
}

func TestSupersededProbeFailureIgnored(t *testing.T) {
	tr, clock := failedTracker(t)
	lost := nextProbe(t, tr, clock)
	newer := nextProbe(t, tr, clock)
	// The lost probe's failure neither frees the newer probe's slot nor
	// reschedules it.
	lost.End(storehealth.Failed)
	begin(t, tr, false, false)
	newer.End(storehealth.Succeeded)
	wantHealthy(t, tr, true)
}

func TestStaleOutcomesIgnored(t *testing.T) {
	tr, clock := newTracker(t)
	a := begin(t, tr, true, false)
	b := begin(t, tr, true, false)
	c := begin(t, tr, true, false)
	a.End(storehealth.Failed)
	// b began before the failure: its success does not mark the store
	// healthy, and c's failure does not push the probe back.
	b.End(storehealth.Succeeded)
	wantHealthy(t, tr, false)
	clock.Advance(interval / 2)
	c.End(storehealth.Failed)
	clock.Advance(interval / 2)
	p := begin(t, tr, true, true)
	p.End(storehealth.Succeeded)
	// Calls begun while down (none could be) or before recovery are stale.
	a.End(storehealth.Failed)
	wantHealthy(t, tr, true)
	if got := tr.State().Failures; got != 1 {
		t.Errorf("Failures = %d, want 1", got)
	}
}

func TestZeroAndNilTrackers(t *testing.T) {
	var zero storehealth.Tracker
	c, ok := zero.Begin()
	if !ok {
		t.Fatal("zero Tracker: Begin not ok")
	}
	c.End(storehealth.Failed)
	if zero.Healthy() {
		t.Error("zero Tracker: healthy after a failure")
	}
	if _, ok := zero.Begin(); ok {
		t.Error("zero Tracker: Begin ok right after a failure (default interval)")
	}

	var none *storehealth.Tracker
	for range 3 {
		c, ok := none.Begin()
		if !ok {
			t.Fatal("nil Tracker: Begin not ok")
		}
		c.End(storehealth.Failed)
	}
	if !none.Healthy() || !none.State().Healthy {
		t.Error("nil Tracker: not healthy")
	}
}

func TestOutcomeOf(t *testing.T) {
	live := context.Background()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	broken := errors.New("connection refused")
	tests := []struct {
		ctx  context.Context
		err  error
		want storehealth.Outcome
	}{
		{live, nil, storehealth.Succeeded},
		{done, nil, storehealth.Succeeded},
		{live, broken, storehealth.Failed},
		// The store's own timeout, while the caller still waits.
		{live, context.DeadlineExceeded, storehealth.Failed},
		{done, broken, storehealth.Unknown},
		{done, context.Canceled, storehealth.Unknown},
	}
	for _, tt := range tests {
		if got := storehealth.OutcomeOf(tt.ctx, tt.err); got != tt.want {
			t.Errorf("OutcomeOf(ctx err %v, %v) = %v, want %v", tt.ctx.Err(), tt.err, got, tt.want)
		}
	}
}

// TestConcurrent runs callers and a moving clock against one Tracker, for
// the race detector.
func TestConcurrent(t *testing.T) {
	tr, clock := newTracker(t)
	testkit.Parallel(8, func(g int) error {
		for i := range 2000 {
			if c, ok := tr.Begin(); ok {
				c.End(storehealth.Outcome((g + i) % 3))
			}
			if i%50 == 0 {
				clock.Advance(interval / 4)
			}
		}
		return nil
	})
	st := tr.State()
	if st.Failures == 0 || st.Skipped == 0 {
		t.Errorf("State() = %+v, want some failures and skipped calls", st)
	}
}

func ExampleTracker() {
	tracker := storehealth.New()
	lookup := func(ctx context.Context) (string, error) {
		call, ok := tracker.Begin()
		if !ok {
			return "", fmt.Errorf("cache: store unavailable: %w", storehealth.ErrDown)
		}
		v, err := "value", error(nil) // the store call
		call.End(storehealth.OutcomeOf(ctx, err))
		return v, err
	}
	fmt.Println(lookup(context.Background()))
	// Output: value <nil>
}
