package pool_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/topdeck/resilience/client/pool"
	"github.com/topdeck/resilience/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func TestConcurrencyBound(t *testing.T) {
	for _, workers := range []int{1, 3, 8} {
		var running testkit.Gauge
		results, sum := pool.Run(context.Background(), seq(40), func(ctx context.Context, i int) (int, error) {
			running.Enter()
			time.Sleep(time.Millisecond)
			running.Leave()
			return i * i, nil
		}, pool.WithWorkers(workers))
		if got := running.Peak(); got > int64(workers) || got < 1 {
			t.Errorf("workers=%d: peak concurrency got %d, want 1..%d", workers, got, workers)
		}
		if sum.Succeeded != 40 || sum.Failed != 0 || sum.Total != 40 {
			t.Errorf("workers=%d: summary got %+v, want 40 succeeded", workers, sum)
		}
		for i, r := range results {
			if r.Index != i || r.Value != i*i || r.Err != nil {
				t.Errorf("workers=%d: result %d got %+v, want {Index:%d Value:%d}", workers, i, r, i, i*i)
			}
		}
	}
}

func TestPerTaskTimeout(t *testing.T) {
	results, sum := pool.Run(context.Background(), seq(6), func(ctx context.Context, i int) (string, error) {
		if i%2 == 1 { // odd items hang until their own timeout
			<-ctx.Done()
			return "", ctx.Err()
		}
		return "ok", nil
	}, pool.WithWorkers(2), pool.WithTaskTimeout(20*time.Millisecond))
	for i, r := range results {
		if i%2 == 1 && !errors.Is(r.Err, context.DeadlineExceeded) {
			t.Errorf("item %d: got err %v, want DeadlineExceeded", i, r.Err)
		}
		if i%2 == 0 && (r.Err != nil || r.Value != "ok") {
			t.Errorf("item %d: got %+v, want ok", i, r)
		}
	}
	if sum.Succeeded != 3 || sum.Failed != 3 || sum.Kinds["DeadlineExceeded"] != 3 {
		t.Errorf("summary: got %v, want 3 succeeded, 3 DeadlineExceeded", sum)
	}
}

func TestTrackerKindsAndFailures(t *testing.T) {
	errPlain := errors.New("plain")
	items := []string{"a", "b", "c", "d", "e", "f"}
	_, sum := pool.Run(context.Background(), items, func(ctx context.Context, s string) (int, error) {
		switch s {
		case "b", "e":
			return 0, status.Error(codes.Unavailable, "down")
		case "c":
			panic("kaboom")
		case "d":
			return 0, errPlain
		}
		return 1, nil
	}, pool.WithWorkers(3))
	if sum.Total != 6 || sum.Succeeded != 2 || sum.Failed != 4 {
		t.Fatalf("summary: got %v, want 6 items, 2 succeeded, 4 failed", sum)
	}
	wantKinds := map[string]int{"Unavailable": 2, "Panic": 1, "*errors.errorString": 1}
	for k, v := range wantKinds {
		if sum.Kinds[k] != v {
			t.Errorf("Kinds[%q]: got %d, want %d (all: %v)", k, sum.Kinds[k], v, sum.Kinds)
		}
	}
	var idx []int
	for _, f := range sum.Failures {
		idx = append(idx, f.Index)
		if items[f.Index] != f.Item {
			t.Errorf("failure %d: item got %q, want %q", f.Index, f.Item, items[f.Index])
		}
	}
	if got, want := idx, []int{1, 2, 3, 4}; !slices.Equal(got, want) {
		t.Errorf("failure indexes: got %v, want %v", got, want)
	}
	var pe *pool.PanicError
	if err := sum.Err(); !errors.Is(err, errPlain) || !errors.As(err, &pe) {
		t.Errorf("Summary.Err: got %v, want it to match errPlain and *PanicError", err)
	}
	if got := sum.String(); !strings.HasPrefix(got, "6 items: 2 succeeded, 4 failed (Unavailable: 2") {
		t.Errorf("Summary.String: got %q", got)
	}
}

func TestCancelledParentSkipsTheRest(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var started atomic.Int64
	results, sum := pool.Run(ctx, seq(100), func(ctx context.Context, i int) (int, error) {
		if started.Add(1) == 3 {
			cancel()
		}
		return i, nil
	}, pool.WithWorkers(1))
	if sum.Total != 100 || sum.Skipped == 0 || sum.Succeeded+sum.Failed+sum.Skipped != 100 {
		t.Errorf("summary: got %v, want 100 items with some skipped", sum)
	}
	if got := started.Load(); got > 4 {
		t.Errorf("started: got %d, want at most 4 after cancel", got)
	}
	if last := results[99]; !errors.Is(last.Err, context.Canceled) {
		t.Errorf("last result: got %+v, want context.Canceled", last)
	}
}

func TestEmptyAndNoSummaryError(t *testing.T) {
	results, sum := pool.Run(context.Background(), nil, func(ctx context.Context, i int) (int, error) { return i, nil })
	if len(results) != 0 || sum.Total != 0 || sum.Err() != nil {
		t.Errorf("empty batch: got %v, %v, %v; want nothing", results, sum, sum.Err())
	}
}

func BenchmarkRun(b *testing.B) {
	items := seq(1000)
	for b.Loop() {
		pool.Run(context.Background(), items, func(ctx context.Context, i int) (int, error) { return i, nil }, pool.WithWorkers(8))
	}
}
