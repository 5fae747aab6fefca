package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/topdeck/resilience/internal/redistest"
	"github.com/topdeck/resilience/limiter"
	"github.com/topdeck/resilience/limiter/redisstore"
	"github.com/topdeck/resilience/limiter/storetest"
)

// commandCalls returns how many times Redis ran cmd (from INFO
// commandstats).
func commandCalls(t *testing.T, client *redis.Client, cmd string) int64 {
	t.Helper()
	info, err := client.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":calls=")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
		if err != nil {
			t.Fatalf("cannot parse %q: %v", line, err)
		}
		return n
	}
	return 0
}

// takeAll runs workers goroutines that each Take cost 1 on key calls times
// and returns every result.
func takeAll(t *testing.T, s *redisstore.Store, key string, lim limiter.Limit, workers, calls int) []limiter.Result {
	t.Helper()
	var mu sync.Mutex
	var results []limiter.Result
	var g errgroup.Group
	for range workers {
		g.Go(func() error {
			for range calls {
				res, err := s.Take(context.Background(), key, lim, 1, 0)
				if err != nil {
					return err
				}
				mu.Lock()
				results = append(results, res)
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("Take: %v", err)
	}
	return results
}

// checkExactBurst checks results of Takes of cost 1 on a full bucket of
// burst tokens at a frozen instant: exactly burst admitted, with Remaining
// burst-1 down to 0, one each, and every other call denied.
func checkExactBurst(t *testing.T, results []limiter.Result, burst int64, interval time.Duration) {
	t.Helper()
	var remaining []int64
	for _, res := range results {
		if res.Allowed {
			remaining = append(remaining, res.Remaining)
			continue
		}
		// The bucket is empty: one token comes back after one interval.
		if want := (limiter.Result{RetryAfter: interval, ResetAfter: time.Duration(burst) * interval}); res != want {
			t.Errorf("denial = %+v, want %+v", res, want)
			return
		}
	}
	if got := int64(len(remaining)); got != burst {
		t.Fatalf("admitted %d of %d, want exactly the burst %d", got, len(results), burst)
	}
	sort.Slice(remaining, func(i, j int) bool { return remaining[i] > remaining[j] })
	for i, r := range remaining {
		if want := burst - 1 - int64(i); r != want {
			t.Fatalf("sorted Remaining of admitted calls = %v, want %d down to 0, each once", remaining, burst-1)
		}
	}
}

// TestBatchedExact runs many goroutines on one key at a frozen instant:
// batched decisions are as exact as sequential ones, and a batch is one
// EVALSHA (at most WithMaxBatch decisions each).
func TestBatchedExact(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	clock := storetest.NewClock(time.Unix(1_700_000_000, 0))
	tests := []struct {
		name     string
		opts     []redisstore.Option
		maxBatch int64 // decisions per EVALSHA at most; 1: exactly one each
	}{
		{"batching", nil, redisstore.DefaultMaxBatch},
		{"small batches", []redisstore.Option{redisstore.WithMaxBatch(4), redisstore.WithTimeout(time.Second)}, 4},
		{"no batching", []redisstore.Option{redisstore.WithBatching(false)}, 1},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := append([]redisstore.Option{redisstore.WithClockForTesting(clock.Now),
				redisstore.WithPrefix(fmt.Sprintf("exact%d:", i))}, tt.opts...)
			s := redisstore.New(client, opts...)
			// One token a second: the key, which expires in real time when the
			// bucket would be full again, outlives the test.
			lim := limiter.Limit{MaxCalls: 150, Window: 150 * time.Second}
			before := commandCalls(t, client, "evalsha")
			const workers, calls = 64, 8
			results := takeAll(t, s, "hot", lim, workers, calls)
			checkExactBurst(t, results, 150, time.Second)
			// On one node a batch is one EVALSHA; unbatched, each decision
			// is its own.
			got, decisions := commandCalls(t, client, "evalsha")-before, int64(workers*calls)
			if least := (decisions + tt.maxBatch - 1) / tt.maxBatch; got < least || got > decisions {
				t.Errorf("EVALSHA calls = %d for %d decisions, want %d to %d", got, decisions, least, decisions)
			}
			res, err := s.Peek(context.Background(), "hot", lim, 1)
			if err != nil || res.Allowed || res.Remaining != 0 {
				t.Errorf("Peek after = (%+v, %v), want a denial with 0 remaining", res, err)
			}
		})
	}
}

// TestBatchedRealTime is TestRealTimeConcurrent's bound with more callers,
// so that batches are large, and Redis TIME as the clock.
func TestBatchedRealTime(t *testing.T) {
	srv := redistest.Start(t)
	s := redisstore.New(srv.Client())
	lim := limiter.Limit{MaxCalls: 500, Window: time.Second, Burst: 50}
	const workers = 64
	const period = 500 * time.Millisecond
	floodHotKey(t, s, lim, workers, period)
}

// TestBatchedCancellation mixes callers whose contexts end at random moments
// with callers that wait: the waiting ones all get decisions, the others get
// a decision or their context's error, and the tokens taken lie between
// what the callers were told and that plus the canceled calls.
func TestBatchedCancellation(t *testing.T) {
	srv := redistest.Start(t)
	clock := storetest.NewClock(time.Unix(1_700_000_000, 0))
	s := redisstore.New(srv.Client(), redisstore.WithClockForTesting(clock.Now))
	// Never empty here, and the key (which expires in real time, when the
	// bucket would be full again) outlives the test.
	lim := limiter.Limit{MaxCalls: 100_000, Window: time.Hour}
	const workers, calls = 64, 20
	var told, canceled atomic.Int64
	var g errgroup.Group
	for w := range workers {
		g.Go(func() error {
			for i := range calls {
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if w%2 == 1 {
					ctx, cancel = context.WithTimeout(ctx, time.Duration(rand.IntN(2000))*time.Microsecond)
					if i%5 == 0 {
						cancel() // canceled before the call
					}
				}
				res, err := s.Take(ctx, "k", lim, 1, 0)
				cancel()
				switch {
				case err == nil && res.Allowed:
					told.Add(1)
				case err == nil:
					return fmt.Errorf("Take denied: %+v", res)
				case w%2 == 1 && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)):
					// The caller's own deadline (its context's timer may fire
					// a moment after Take saw the deadline pass).
					canceled.Add(1)
				default:
					return fmt.Errorf("worker %d, call %d: Take: %w", w, i, err)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	res, err := s.Peek(context.Background(), "k", lim, 1)
	if err != nil {
		t.Fatal(err)
	}
	taken := lim.MaxCalls - res.Remaining
	t.Logf("%d decisions returned, %d canceled, %d tokens taken", told.Load(), canceled.Load(), taken)
	if taken < told.Load() || taken > told.Load()+canceled.Load() {
		t.Errorf("tokens taken = %d, want between %d (decisions returned) and %d (plus canceled calls)",
			taken, told.Load(), told.Load()+canceled.Load())
	}
	if told.Load() < workers/2*calls {
		t.Errorf("decisions returned = %d, want at least %d (every call without a deadline)", told.Load(), workers/2*calls)
	}
}

// TestNoScriptRecovery checks that decisions survive a Redis that lost its
// scripts, both after SCRIPT FLUSH and after a restart: NOSCRIPT replies are
// retried once, never reported.
func TestNoScriptRecovery(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	ctx := context.Background()
	clock := storetest.NewClock(time.Unix(1_700_000_000, 0))
	lim := limiter.Limit{MaxCalls: 40, Window: 40 * time.Second} // as in TestBatchedExact

	scriptLoaded := func(t *testing.T) bool {
		t.Helper()
		ok, err := client.ScriptExists(ctx, redisstore.GCRAScriptHash).Result()
		if err != nil {
			t.Fatal(err)
		}
		return ok[0]
	}
	lose := map[string]func(t *testing.T){
		"SCRIPT FLUSH": func(t *testing.T) {
			if err := client.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		},
		"restart": func(t *testing.T) {
			srv.Kill()
			srv.Restart()
			// Drop the dead pooled connections: wait for a good one.
			redistest.WaitAnswering(t, client, 10*time.Second)
		},
	}
	for _, how := range []string{"SCRIPT FLUSH", "restart"} {
		for _, batching := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/batching=%v", how, batching), func(t *testing.T) {
				s := redisstore.New(client, redisstore.WithBatching(batching), redisstore.WithClockForTesting(clock.Now),
					redisstore.WithPrefix(fmt.Sprintf("%s%v:", strings.ReplaceAll(how, " ", ""), batching)))
				if _, err := s.Take(ctx, "warm", lim, 1, 0); err != nil {
					t.Fatal(err)
				}
				lose[how](t)
				if scriptLoaded(t) {
					t.Fatalf("script still loaded after %s", how)
				}
				results := takeAll(t, s, "k", lim, 32, 2)
				checkExactBurst(t, results, 40, time.Second)
				if !scriptLoaded(t) {
					t.Errorf("script not loaded again after the retries")
				}
			})
		}
	}
}

// TestBatchedOutage checks that with Redis down every caller of a batch
// gets an error wrapping ErrStoreUnavailable, never a denial.
func TestBatchedOutage(t *testing.T) {
	srv := redistest.Start(t)
	s := redisstore.New(srv.Client())
	lim := limiter.Limit{MaxCalls: 10, Window: time.Second}
	if _, err := s.Take(context.Background(), "k", lim, 1, 0); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	var wg sync.WaitGroup
	errs := make([]error, 32)
	for i := range errs {
		wg.Go(func() {
			res, err := s.Take(context.Background(), "k", lim, 1, 0)
			if err == nil {
				err = fmt.Errorf("got %+v, nil", res)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, limiter.ErrStoreUnavailable) {
			t.Errorf("caller %d with Redis down: %v, want an error wrapping ErrStoreUnavailable", i, err)
		}
	}
}
