package repeat

import (
	"context"
	"time"
)

// Run runs fn after first, then again next() after each return of fn, until
// ctx ends; it returns then, and never runs fn once ctx has ended. It does not
// stop a run of fn in progress: fn watches ctx itself. next is called after
// each run, so that it may depend on what the run did (a backoff).
func Run(ctx context.Context, first time.Duration, next func() time.Duration, fn func()) {
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fn()
		if ctx.Err() != nil {
			return
		}
		t.Reset(next())
	}
}
