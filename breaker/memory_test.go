package breaker_test

import (
	"context"
	"testing"
	"time"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/breaker/storetest"
)

func TestMemoryStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) breaker.Store {
		s := breaker.NewMemoryStore(breaker.WithMemoryClock(now))
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestMemoryStoreForgetsIdleBreakers(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(storetest.Epoch)
	s := breaker.NewMemoryStore(breaker.WithMemoryClock(clock.Now), breaker.WithMemoryIdleTTL(time.Minute))
	t.Cleanup(func() { _ = s.Close() })
	keep := pol.KeepFor(time.Minute) // 1m + recovery 10s + probe 1s

	var oldGen uint64
	for range pol.FailureThreshold {
		r, err := s.Report(ctx, "old", pol, breaker.OutcomeFailure, 0, "")
		if err != nil {
			t.Fatal(err)
		}
		oldGen = r.Generation
	}
	if st, _ := s.Status(ctx, "old", pol); st.State != breaker.StateOpen {
		t.Fatalf("old: got %v, want OPEN", st.State)
	}
	clock.Advance(keep - time.Second)
	if _, err := s.Allow(ctx, "busy", pol); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Second) // old is now idle for keep+1s, busy for 2s

	list, _, err := s.List(ctx, "", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "busy" {
		t.Fatalf("List after old went idle: got %+v, want only busy", list)
	}
	st, err := s.Status(ctx, "old", pol)
	if err != nil || st.State != breaker.StateClosed || st.Generation != 0 {
		t.Fatalf("Status of a forgotten breaker: got %+v, %v, want CLOSED without generation (0)", st, err)
	}
	// Used again, it starts a generation above the one it was forgotten at.
	a, err := s.Allow(ctx, "old", pol)
	if err != nil || a.Generation <= oldGen {
		t.Fatalf("Allow of a forgotten breaker used again: got %+v, %v; want a generation above %d", a, err, oldGen)
	}
	if r, _ := s.Report(ctx, "old", pol, breaker.OutcomeFailure, oldGen, ""); !r.Ignored {
		t.Fatalf("FAILURE from before it was forgotten: got %+v, want ignored", r)
	}
}
