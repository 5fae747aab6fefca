package pool

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"
)

// Result is the outcome of one item.
type Result[R any] struct {
	// Index is the item's position in the input.
	Index int
	// Value is what the function returned (its zero value on error).
	Value R
	// Err is the function's error, a *PanicError, or the parent context's
	// error for an item that was never started.
	Err error
}

// DefaultWorkers is the default number of workers.
const DefaultWorkers = 4

// Option configures Run.
type Option func(*options)

type options struct {
	workers     int
	taskTimeout time.Duration
	kind        func(error) string
}

// WithWorkers bounds the number of tasks running at once (default
// DefaultWorkers; values < 1 mean 1).
func WithWorkers(n int) Option { return func(o *options) { o.workers = max(n, 1) } }

// WithTaskTimeout gives each task a context that ends after d (default: no
// timeout beyond the parent context's).
func WithTaskTimeout(d time.Duration) Option { return func(o *options) { o.taskTimeout = d } }

// WithKind sets how failures are grouped in the Summary (default Kind).
func WithKind(kind func(error) string) Option { return func(o *options) { o.kind = kind } }

// PanicError is the error of a task that panicked.
type PanicError struct {
	// Value is what the task panicked with.
	Value any
	// Stack is the goroutine's stack at the panic.
	Stack []byte
}

// Error returns "pool: task panicked: <value>".
func (e *PanicError) Error() string { return fmt.Sprintf("pool: task panicked: %v", e.Value) }

// Run calls fn for every item with at most the configured number of workers
// at once and returns one Result per item, in input order, and the Summary of
// the batch. A failing item never stops the others. Run returns when every
// started task has returned; it starts no goroutine that outlives it.
//
// Run is safe for concurrent use; fn must be safe to call from several
// goroutines at once.
func Run[T, R any](ctx context.Context, items []T, fn func(ctx context.Context, item T) (R, error), opts ...Option) ([]Result[R], Summary[T]) {
	o := options{workers: DefaultWorkers}
	for _, opt := range opts {
		opt(&o)
	}
	tr := NewTracker[T](o.kind)
	results := make([]Result[R], len(items))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(o.workers, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				v, err := runTask(ctx, o.taskTimeout, items[i], fn)
				results[i] = Result[R]{Index: i, Value: v, Err: err}
				tr.Record(i, items[i], err)
			}
		}()
	}
	i := 0
feed:
	for ; i < len(items); i++ {
		if ctx.Err() != nil {
			break
		}
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	for ; i < len(items); i++ {
		results[i] = Result[R]{Index: i, Err: ctx.Err()}
		tr.Skip(i, items[i])
	}
	return results, tr.Summary()
}

// runTask calls fn for one item with its own timeout, turning a panic into a
// *PanicError.
func runTask[T, R any](ctx context.Context, timeout time.Duration, item T, fn func(context.Context, T) (R, error)) (v R, err error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	defer func() {
		if p := recover(); p != nil {
			var zero R
			v, err = zero, &PanicError{Value: p, Stack: debug.Stack()}
		}
	}()
	return fn(ctx, item)
}
