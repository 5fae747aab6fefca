package redisstore

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/topdeck/resilience/limiter"
)

// fakeExec records the batches it executes and, while gate is set, holds
// each batch until the test releases it. Each call's result is its key's
// length in Remaining, so that callers can check they got their own.
type fakeExec struct {
	mu      sync.Mutex // protects the fields below
	batches [][]string
	ctxErrs []error       // each batch's context's error when it finished
	gate    chan struct{} // nil: do not hold
	started chan struct{} // receives one value per batch started
}

func newFakeExec() *fakeExec {
	return &fakeExec{gate: make(chan struct{}), started: make(chan struct{}, 100)}
}

func (f *fakeExec) exec(ctx context.Context, batch []*call) {
	f.mu.Lock()
	keys := make([]string, len(batch))
	for i, c := range batch {
		keys[i] = c.key
	}
	f.batches = append(f.batches, keys)
	gate := f.gate
	f.mu.Unlock()
	f.started <- struct{}{}
	if gate != nil {
		<-gate
	}
	for _, c := range batch {
		c.res, c.err = limiter.Result{Allowed: true, Remaining: int64(len(c.key))}, nil
	}
	f.mu.Lock()
	f.ctxErrs = append(f.ctxErrs, ctx.Err())
	f.mu.Unlock()
}

// release lets the batch in flight (and every later one) run.
func (f *fakeExec) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gate != nil {
		close(f.gate)
		f.gate = nil
	}
}

func (f *fakeExec) got() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]string(nil), f.batches...)
}

func newTestBatcher(f *fakeExec, maxBatch int) *batcher {
	return &batcher{exec: f.exec, maxBatch: maxBatch, timeout: time.Minute}
}

func newTestCall(key string) *call {
	return &call{key: key, mode: "take", wake: make(chan bool, 1)}
}

type outcome struct {
	key string
	res limiter.Result
	err error
}

// start runs b.do for key in a goroutine and returns where its outcome goes.
func start(ctx context.Context, b *batcher, key string, wg *sync.WaitGroup) <-chan outcome {
	ch := make(chan outcome, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		res, err, _ := b.do(ctx, newTestCall(key))
		ch <- outcome{key, res, err}
	}()
	return ch
}

// waitQueued waits until n calls are queued (abandoned ones included).
func waitQueued(t *testing.T, b *batcher, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		got := len(b.queue)
		b.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue length = %d after 10s, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func checkOwn(t *testing.T, o outcome) {
	t.Helper()
	if o.err != nil || !o.res.Allowed || o.res.Remaining != int64(len(o.key)) {
		t.Errorf("caller %q got (%+v, %v), want its own result (Remaining %d)", o.key, o.res, o.err, len(o.key))
	}
}

// TestBatcherGroupsWaitingCallers: callers that arrive while a batch is in
// flight go together in the next one, at most maxBatch at a time, oldest
// first.
func TestBatcherGroupsWaitingCallers(t *testing.T) {
	f := newFakeExec()
	b := newTestBatcher(f, 3)
	ctx := context.Background()
	var wg sync.WaitGroup
	var outs []<-chan outcome
	outs = append(outs, start(ctx, b, "a", &wg))
	<-f.started // "a" is in flight alone
	for i, key := range []string{"bb", "ccc", "dddd", "eeeee"} {
		outs = append(outs, start(ctx, b, key, &wg))
		waitQueued(t, b, i+1) // keeps the queue in this order
	}
	f.release()
	wg.Wait()
	for _, ch := range outs {
		checkOwn(t, <-ch)
	}
	got := f.got()
	want := [][]string{{"a"}, {"bb", "ccc", "dddd"}, {"eeeee"}}
	if len(got) != len(want) {
		t.Fatalf("batches = %q, want %q", got, want)
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("batches = %q, want %q", got, want)
		}
		for j := range want[i] {
			if got[i][j] != want[i][j] {
				t.Fatalf("batches = %q, want %q", got, want)
			}
		}
	}
	if b.leaders != 0 || len(b.queue) != 0 {
		t.Errorf("after all calls: %d leaders, queue %d; want idle and empty", b.leaders, len(b.queue))
	}
}

// TestBatcherQueuedCallerCancels: a queued caller whose context ends returns
// at once, is never executed, and the others are served.
func TestBatcherQueuedCallerCancels(t *testing.T) {
	// Both ways a queued caller can give up (before or after it is chosen to
	// lead the next batch) depend on scheduling: repeat to see both.
	for range 50 {
		f := newFakeExec()
		b := newTestBatcher(f, 10)
		var wg sync.WaitGroup
		a := start(context.Background(), b, "a", &wg)
		<-f.started
		cctx, cancel := context.WithCancel(context.Background())
		x := start(cctx, b, "xx", &wg)
		waitQueued(t, b, 1)
		c := start(context.Background(), b, "ccc", &wg)
		waitQueued(t, b, 2)

		cancel()
		// Returns while batch "a" is still held.
		if o := <-x; !errors.Is(o.err, context.Canceled) {
			t.Fatalf("canceled caller got (%+v, %v), want context.Canceled", o.res, o.err)
		}
		f.release()
		wg.Wait()
		checkOwn(t, <-a)
		checkOwn(t, <-c)
		for _, batch := range f.got() {
			for _, key := range batch {
				if key == "xx" {
					t.Fatalf("batches = %q: the canceled caller was executed", f.got())
				}
			}
		}
		if b.leaders != 0 {
			t.Fatalf("after all calls: %d leaders, want idle", b.leaders)
		}
	}
}

// TestBatcherLeaderCancels: the leader's own cancellation does not cancel
// its batch; it gets its decision, and so do the others.
func TestBatcherLeaderCancels(t *testing.T) {
	f := newFakeExec()
	b := newTestBatcher(f, 10)
	var wg sync.WaitGroup
	lctx, cancel := context.WithCancel(context.Background())
	a := start(lctx, b, "a", &wg)
	<-f.started
	bb := start(context.Background(), b, "bb", &wg)
	waitQueued(t, b, 1)
	cancel()
	f.release()
	wg.Wait()
	checkOwn(t, <-a)
	checkOwn(t, <-bb)
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, err := range f.ctxErrs {
		if err != nil {
			t.Errorf("batch %d: its context ended (%v), want it alive until the batch is done", i, err)
		}
	}
}

// TestBatcherCanceledBeforeStart: a caller whose context already ended gets
// its error and sends nothing.
func TestBatcherCanceledBeforeStart(t *testing.T) {
	f := newFakeExec()
	f.release()
	b := newTestBatcher(f, 10)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err, _ := b.do(ctx, newTestCall("a")); !errors.Is(err, context.Canceled) {
		t.Errorf("do with a canceled context: error %v, want context.Canceled", err)
	}
	if got := f.got(); len(got) != 0 {
		t.Errorf("batches = %q, want none", got)
	}
}

// TestBatcherDeadline checks the batch context's deadline: the store
// timeout, or the latest caller deadline when every caller has one and it is
// sooner.
func TestBatcherDeadline(t *testing.T) {
	b := &batcher{timeout: time.Hour}
	now := time.Now()
	soon, later := now.Add(time.Minute), now.Add(2*time.Minute)
	tests := []struct {
		name      string
		deadlines []time.Time
		want      time.Time // zero: about now + timeout
	}{
		{"none", []time.Time{{}, {}}, time.Time{}},
		{"one without", []time.Time{soon, {}}, time.Time{}},
		{"all with", []time.Time{soon, later}, later},
		{"all later than timeout", []time.Time{now.Add(3 * time.Hour)}, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var batch []*call
			for _, d := range tt.deadlines {
				batch = append(batch, &call{deadline: d})
			}
			ctx, cancel := b.context(context.Background(), batch)
			defer cancel()
			got, ok := ctx.Deadline()
			if !ok {
				t.Fatal("batch context has no deadline")
			}
			if tt.want.IsZero() {
				if d := got.Sub(now); d < time.Hour || d > time.Hour+time.Minute {
					t.Errorf("deadline in %v, want about the timeout (1h)", d)
				}
			} else if !got.Equal(tt.want) {
				t.Errorf("deadline %v, want %v", got, tt.want)
			}
		})
	}
}

// TestBatcherExecPanics: a panic in exec reaches the leader, fails the
// others of its batch with ErrStoreUnavailable, and the next batch is sent.
func TestBatcherExecPanics(t *testing.T) {
	f := newFakeExec()
	b := &batcher{maxBatch: 10, timeout: time.Minute, exec: func(ctx context.Context, batch []*call) {
		if batch[0].key == "p" {
			panic("exec failed")
		}
		f.exec(ctx, batch)
	}}
	var wg sync.WaitGroup
	a := start(context.Background(), b, "a", &wg)
	<-f.started // "a" in flight
	recovered := make(chan any, 1)
	wg.Go(func() {
		defer func() { recovered <- recover() }()
		b.do(context.Background(), newTestCall("p"))
	})
	waitQueued(t, b, 1)
	bb := start(context.Background(), b, "bb", &wg)
	waitQueued(t, b, 2)
	f.release() // the next batch is [p bb], led by p
	checkOwn(t, <-a)
	if r := <-recovered; r != "exec failed" {
		t.Errorf("leader recovered %v, want the panic", r)
	}
	if o := <-bb; !errors.Is(o.err, limiter.ErrStoreUnavailable) {
		t.Errorf("caller in the panicked batch got (%+v, %v), want ErrStoreUnavailable", o.res, o.err)
	}
	checkOwn(t, <-start(context.Background(), b, "ccc", &wg))
	wg.Wait()
}
