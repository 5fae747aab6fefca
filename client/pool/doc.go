// Package pool runs a function over many items with a bounded number of
// workers, a per-task timeout and an error tracker, so that a batch goes on
// despite failures and reports them all at the end.
//
// # Guide
//
//	results, sum := pool.Run(ctx, repos, func(ctx context.Context, r Repo) (Stats, error) {
//		return fetchStats(ctx, r)
//	}, pool.WithWorkers(8), pool.WithTaskTimeout(10*time.Second))
//	for _, f := range sum.Failures {
//		log.Printf("item %d (%v) failed: %v", f.Index, f.Item, f.Err)
//	}
//	log.Print(sum) // "100 items: 97 succeeded, 3 failed (Unavailable: 2, DeadlineExceeded: 1)"
//
// Results come back in input order, one per item. Every failure is recorded
// with its item and index and counted by kind: the gRPC code name for a gRPC
// status, "DeadlineExceeded" or "Canceled" for context errors, "Panic" for a
// task that panicked (the panic becomes a *PanicError), otherwise the Go type
// of the innermost error. [WithKind] replaces the classification. A
// [Tracker] can also be used alone, around any loop.
//
// Each task gets a context with the per-task timeout; tasks must honour it
// (the pool never abandons a running task, so the worker bound always holds).
// When the parent context ends, items not yet started are not run: their
// Result carries the context's error and they are counted as Skipped.
package pool
