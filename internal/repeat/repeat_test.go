package repeat

import (
	"context"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	runs, nexts := 0, 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, 0, func() time.Duration { nexts++; return time.Millisecond }, func() {
			if runs++; runs == 3 {
				cancel()
			}
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if runs != 3 || nexts != 2 { // no pause after the run that ended ctx
		t.Fatalf("got %d runs and %d pauses, want 3 and 2", runs, nexts)
	}
}

func TestRunEndedContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	Run(ctx, time.Hour, func() time.Duration { return time.Hour }, func() { t.Fatal("fn ran after the context ended") })
}
