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

// TestBatcherDeadline checks the batch context's deadline: the earliest
// bound of its calls (asked for + timeout), or the latest caller deadline
// when every caller has one and it is sooner.
func TestBatcherDeadline(t *testing.T) {
	b := &batcher{timeout: time.Hour}
	now := time.Now()
	soon, later := now.Add(time.Minute), now.Add(2*time.Minute)
	bound, older := now.Add(time.Hour), now.Add(time.Hour-time.Second)
	type callAt struct{ deadline, bound time.Time }
	tests := []struct {
		name  string
		calls []callAt
		want  time.Time
	}{
		{"none", []callAt{{bound: bound}, {bound: bound}}, bound},
		{"one without", []callAt{{soon, bound}, {bound: bound}}, bound},
		{"all with", []callAt{{soon, bound}, {later, bound}}, later},
		{"all later than the bound", []callAt{{now.Add(3 * time.Hour), bound}}, bound},
		{"the oldest call's bound", []callAt{{bound: bound}, {bound: older}}, older},
		{"the oldest call's bound before every deadline", []callAt{{now.Add(3 * time.Hour), bound}, {now.Add(2 * time.Hour), older}}, older},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var batch []*call
			for _, c := range tt.calls {
				batch = append(batch, &call{deadline: c.deadline, bound: c.bound})
			}
			ctx, cancel := b.context(context.Background(), batch)
			defer cancel()
			got, ok := ctx.Deadline()
			if !ok {
				t.Fatal("batch context has no deadline")
			}
			if !got.Equal(tt.want) {
				t.Errorf("deadline %v, want %v", got, tt.want)
			}
		})
	}
}

// TestBatcherQueuedCallsKeepTheirBound: with every batch slot taken by a
// batch that hangs until its deadline, a call asked for later waits for a
// slot and is still over by its own bound (asked for + timeout), with no
// context deadline of its own: the batch it joins has the deadline of its
// oldest call, not timeout from when the batch started.
func TestBatcherQueuedCallsKeepTheirBound(t *testing.T) {
	const timeout = 300 * time.Millisecond
	var mu sync.Mutex
	var deadlines []time.Time // of each batch, in the order they ran
	b := &batcher{maxBatch: 10, maxInFlight: 1, timeout: timeout, exec: func(ctx context.Context, batch []*call) {
		d, _ := ctx.Deadline()
		mu.Lock()
		deadlines = append(deadlines, d)
		mu.Unlock()
		<-ctx.Done() // a hung Redis: over at the deadline, not before
		for _, c := range batch {
			c.err = ctx.Err()
		}
	}}
	first := &call{wake: make(chan bool, 1)}
	done := make(chan error, 1)
	go func() {
		_, err, _ := b.do(context.Background(), first)
		done <- err
	}()
	// The first batch is in flight once the slot is taken.
	for i := 0; ; i++ {
		b.mu.Lock()
		busy := b.busyLocked()
		b.mu.Unlock()
		if busy {
			break
		}
		if i == 1000 {
			t.Fatal("the first call never led a batch")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(timeout / 3)
	second := &call{wake: make(chan bool, 1)}
	asked := time.Now()
	_, err, _ := b.do(context.Background(), second)
	over := time.Now()
	if err == nil {
		t.Fatal("a call behind a hung batch succeeded")
	}
	if err := <-done; err == nil {
		t.Fatal("the hung batch succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(deadlines) != 2 {
		t.Fatalf("%d batches ran, want 2", len(deadlines))
	}
	// The second call's batch started when the first timed out, about two
	// thirds of the timeout after the call was asked for; its deadline is
	// the call's bound, not a whole timeout from then.
	if !deadlines[1].Equal(second.bound) {
		t.Errorf("the queued call's batch had deadline %v, want the call's bound %v (it was asked for at %v)", deadlines[1], second.bound, asked)
	}
	if limit := deadlines[0].Add(timeout); !deadlines[1].Before(limit) {
		t.Errorf("the queued call's batch had deadline %v, a timeout or more after the hung batch's %v", deadlines[1], deadlines[0])
	}
	if over.Before(second.bound) {
		t.Errorf("the queued call was over at %v, before its batch's deadline %v", over, second.bound)
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

// TestBatcherGathersCallsThatArriveWithTheLeader: while a new leader yields
// before taking its batch (gathering), callers queue behind it although
// batch slots are free, and go in its batch; those past maxBatch lead the
// next batch at once, without waiting for the first to end.
func TestBatcherGathersCallsThatArriveWithTheLeader(t *testing.T) {
	f := newFakeExec()
	b := &batcher{exec: f.exec, maxBatch: 2, maxInFlight: 4, timeout: time.Minute}
	ctx := context.Background()
	// A leader in its yield, as do leaves it before lead.
	first := newTestCall("a")
	b.mu.Lock()
	b.leaders++
	b.gathering++
	first.state = stateLeading
	b.mu.Unlock()
	var wg sync.WaitGroup
	var outs []<-chan outcome
	for i, key := range []string{"bb", "ccc", "dddd"} {
		outs = append(outs, start(ctx, b, key, &wg))
		waitQueued(t, b, i+1) // queued, not leading: the leader is gathering
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.lead(ctx, first, true)
	}()
	for i := range 2 { // both batches in flight at once: the rest did not wait
		select {
		case <-f.started:
		case <-time.After(10 * time.Second):
			f.release()
			t.Fatalf("%d of 2 batches started in 10s with the first held: the calls past maxBatch waited for it", i)
		}
	}
	f.release()
	wg.Wait()
	checkOwn(t, outcome{"a", first.res, first.err})
	for _, ch := range outs {
		checkOwn(t, <-ch)
	}
	got := f.got()
	if len(got) != 2 || len(got[0])+len(got[1]) != 4 {
		t.Fatalf("batches = %q, want [a bb] and [ccc dddd]", got)
	}
	for _, batch := range got {
		if batch[0] != "a" && batch[0] != "ccc" {
			t.Errorf("batches = %q, want [a bb] and [ccc dddd]", got)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gathering != 0 || b.leaders != 0 || len(b.queue) != 0 {
		t.Errorf("after the batches: gathering %d, leaders %d, queue %d; want 0 0 0", b.gathering, b.leaders, len(b.queue))
	}
}
