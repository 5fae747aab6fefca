package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"

	"github.com/topdeck/resilience/internal/redistest"
	"github.com/topdeck/resilience/limiter"
	"github.com/topdeck/resilience/limiter/redisstore"
	"github.com/topdeck/resilience/limiter/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// scripterOnly hides every method of a client but redis.Scripter's, so the
// Store cannot batch.
type scripterOnly struct{ redis.Scripter }

// conformanceTimeout bounds each store call of the conformance suites: the
// suites test answers, not timeouts, and a loaded 2-core machine under
// -race can take longer than the production 100 ms over a Cluster.
const conformanceTimeout = 2 * time.Second

// newStores returns the stores of one conformance suite: Stores on client
// with the test's clock and opts, each under a fresh prefix (name and the
// next number of n), so that every test of the suite starts empty on a
// shared server.
func newStores(client redis.Scripter, n *atomic.Int64, name string, opts ...redisstore.Option) storetest.NewStoreFunc {
	return func(t *testing.T, now func() time.Time) limiter.Store {
		prefix := fmt.Sprintf("%s%d:", name, n.Add(1))
		return redisstore.New(client, append([]redisstore.Option{redisstore.WithPrefix(prefix), redisstore.WithClockForTesting(now)}, opts...)...)
	}
}

func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	var n atomic.Int64
	tests := []struct {
		name   string
		client redis.Scripter
		opts   []redisstore.Option
	}{
		{"batching", client, nil},
		{"no batching", client, []redisstore.Option{redisstore.WithBatching(false)}},
		{"Scripter only", scripterOnly{client}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One server for the suite; a fresh prefix gives each test an empty store.
			storetest.Run(t, newStores(tt.client, &n, "test", append([]redisstore.Option{redisstore.WithTimeout(conformanceTimeout)}, tt.opts...)...))
		})
	}
}

// TestKeyLayout checks the key name, the stored TAT and that the key expires
// when the bucket is full again.
func TestKeyLayout(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	ctx := context.Background()
	clock := storetest.NewClock(time.Unix(1_700_000_000, 0))
	s := redisstore.New(client, redisstore.WithPrefix("p:"), redisstore.WithClockForTesting(clock.Now))
	if got, want := s.Key("user:1"), "p:rl:{user:1}"; got != want {
		t.Fatalf("Key = %q, want %q", got, want)
	}
	lim := limiter.Limit{MaxCalls: 3, Window: time.Second} // 1/3 s per token
	if _, err := s.Take(ctx, "user:1", lim, 2, 0); err != nil {
		t.Fatal(err)
	}
	v, err := client.Get(ctx, "p:rl:{user:1}").Result()
	if err != nil {
		t.Fatal(err)
	}
	// TAT = now + 2/3 s = now + 666666µs + 2/3µs, under m=3 w=1000000 b=3.
	if want := fmt.Sprintf("%d:2:3:1000000:3", clock.Now().UnixMicro()+666666); v != want {
		t.Errorf("stored value = %q, want %q", v, want)
	}
	ttl, err := client.PTTL(ctx, "p:rl:{user:1}").Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 600*time.Millisecond || ttl > 667*time.Millisecond {
		t.Errorf("PTTL = %v, want about 667ms (the time until the bucket is full)", ttl)
	}
	// A peek and a denial write nothing.
	if _, err := s.Peek(ctx, "other", lim, 1); err != nil {
		t.Fatal(err)
	}
	if n, err := client.Exists(ctx, "p:rl:{other}").Result(); err != nil || n != 0 {
		t.Errorf("after Peek, EXISTS = %d, %v; want 0, nil", n, err)
	}
	if n, err := client.DBSize(ctx).Result(); err != nil || n != 1 {
		t.Errorf("DBSIZE = %d, %v; want 1 (only p:rl:{user:1}), nil", n, err)
	}
}

// TestConformanceCluster runs the suite on a 3-master Redis Cluster, where
// the suite's keys land in different slots and nodes.
func TestConformanceCluster(t *testing.T) {
	client := redistest.StartCluster(t, 3, 0).Client()
	var n atomic.Int64
	for _, batching := range []bool{true, false} {
		t.Run(fmt.Sprint("batching=", batching), func(t *testing.T) {
			storetest.Run(t, newStores(client, &n, "test", redisstore.WithBatching(batching), redisstore.WithTimeout(conformanceTimeout)))
		})
	}
}

// TestLeaseConformance runs the lease-mode suite on one Redis and on a
// 3-master Cluster.
func TestLeaseConformance(t *testing.T) {
	var n atomic.Int64
	run := func(t *testing.T, client redis.UniversalClient) {
		storetest.RunLease(t, newStores(client, &n, "lease"))
	}
	t.Run("single", func(t *testing.T) { run(t, redistest.Start(t).Client()) })
	t.Run("cluster", func(t *testing.T) { run(t, redistest.StartCluster(t, 3, 0).Client()) })
}

// TestLegacyValue checks that a bucket written in the old "tat:rem:m" form,
// whose limit is unknown, is read as at most a drained bucket of the limit
// now in use: a year of debt left by 1/year does not lock out 10/min.
func TestLegacyValue(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	ctx := context.Background()
	clock := storetest.NewClock(time.Unix(1_700_000_000, 0))
	s := redisstore.New(client, redisstore.WithClockForTesting(clock.Now))
	nowUS := clock.Now().UnixMicro()
	year := int64(31536000_000000)
	owner := limiter.Limit{MaxCalls: 10, Window: time.Minute}
	tests := []struct {
		value string
		want  limiter.Result
	}{
		// A year of debt, same reduced m (1): clamped to drained.
		{fmt.Sprintf("%d:0:1", nowUS+year), limiter.Result{RetryAfter: 6 * time.Second, ResetAfter: time.Minute}},
		// Another m: the fraction is rounded up, then clamped.
		{fmt.Sprintf("%d:1:7", nowUS+year), limiter.Result{RetryAfter: 6 * time.Second, ResetAfter: time.Minute}},
		// 12s of debt under the same m: kept, two tokens used.
		{fmt.Sprintf("%d:0:1", nowUS+12_000000), limiter.Result{Allowed: true, Remaining: 7, ResetAfter: 18 * time.Second}},
		// A bucket already full.
		{fmt.Sprintf("%d:0:1", nowUS-1), limiter.Result{Allowed: true, Remaining: 9, ResetAfter: 6 * time.Second}},
	}
	for _, tt := range tests {
		if err := client.Set(ctx, s.Key("legacy"), tt.value, 0).Err(); err != nil {
			t.Fatal(err)
		}
		got, err := s.Take(ctx, "legacy", owner, 1, 0)
		if err != nil || got != tt.want {
			t.Errorf("Take(10/min) on %q = (%+v, %v), want (%+v, nil)", tt.value, got, err, tt.want)
		}
	}
}

// TestMalformedValue checks that a corrupt bucket is an error, not a decision.
func TestMalformedValue(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	ctx := context.Background()
	s := redisstore.New(client)
	if err := client.Set(ctx, s.Key("k"), "garbage", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := s.Take(ctx, "k", limiter.Limit{MaxCalls: 1, Window: time.Second}, 1, 0)
	if !errors.Is(err, limiter.ErrStoreUnavailable) {
		t.Errorf("Take on a malformed bucket: error = %v, want one wrapping ErrStoreUnavailable", err)
	}
}

// TestRealTimeConcurrent runs many goroutines against one key with Redis TIME
// as the clock and checks the admitted count against the bound both ways.
func TestRealTimeConcurrent(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	s := redisstore.New(client)
	lim := limiter.Limit{MaxCalls: 200, Window: time.Second, Burst: 20}
	const workers = 16
	const period = 600 * time.Millisecond

	calls, admitted := floodHotKey(t, s, lim, workers, period)
	// Demand far exceeds the rate, so the bucket should have been kept busy:
	// at least the burst plus half the refill over the period.
	if upper := lim.Burst + int64(float64(lim.MaxCalls)*period.Seconds()); calls > 4*upper {
		lower := lim.Burst + int64(float64(lim.MaxCalls)*period.Seconds()/2)
		if admitted < lower {
			t.Errorf("admitted %d of %d calls in %v, want >= %d (under-admission)", admitted, calls, period, lower)
		}
	} else {
		t.Logf("demand too low (%d calls) to check the lower bound", calls)
	}
}

// floodHotKey runs workers goroutines that take one token at a time from the
// key "hot" for period, checks that the fleet admitted at most
// burst + rate*elapsed (elapsed covers every decision), and returns the
// calls made and admitted.
func floodHotKey(t *testing.T, s *redisstore.Store, lim limiter.Limit, workers int, period time.Duration) (calls, admitted int64) {
	t.Helper()
	var nAdmitted, nCalls atomic.Int64
	begin := time.Now()
	var g errgroup.Group
	for range workers {
		g.Go(func() error {
			for time.Since(begin) < period {
				res, err := s.Take(context.Background(), "hot", lim, 1, 0)
				if err != nil {
					return err
				}
				nCalls.Add(1)
				if res.Allowed {
					nAdmitted.Add(1)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(begin)
	upper := lim.Burst + int64(float64(lim.MaxCalls)*elapsed.Seconds())
	t.Logf("%d workers, %v: %d calls, %d admitted, bound %d", workers, elapsed, nCalls.Load(), nAdmitted.Load(), upper)
	if got := nAdmitted.Load(); got > upper {
		t.Errorf("admitted %d in %v, want <= burst + rate*elapsed = %d", got, elapsed, upper)
	}
	return nCalls.Load(), nAdmitted.Load()
}

// TestOutage checks that a dead Redis gives an error (never a denial), soon,
// and that the store works again once Redis is back.
func TestOutage(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	s := redisstore.New(client)
	ctx := context.Background()
	lim := limiter.Limit{MaxCalls: 10, Window: time.Second}
	if _, err := s.Take(ctx, "k", lim, 1, 0); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	begin := time.Now()
	for _, op := range []string{"Take", "Peek"} {
		var res limiter.Result
		var err error
		if op == "Take" {
			res, err = s.Take(ctx, "k", lim, 1, 0)
		} else {
			res, err = s.Peek(ctx, "k", lim, 1)
		}
		if !errors.Is(err, limiter.ErrStoreUnavailable) {
			t.Errorf("%s with Redis down: (%+v, %v), want an error wrapping ErrStoreUnavailable", op, res, err)
		}
	}
	// A hang detector, not a speed test: the client's timeouts are 200-500ms.
	if d := time.Since(begin); d > 10*time.Second {
		t.Errorf("calls with Redis down took %v, want them to fail fast", d)
	}

	// Degraded decisions through a Limiter, by policy.
	l := limiter.New(s)
	res, err := l.Acquire(ctx, limiter.Request{Key: "k", Limit: lim, Cost: 1})
	if err != nil || !res.Allowed || !res.Degraded {
		t.Errorf("Acquire(AllowLocal) with Redis down = (%+v, %v), want allowed and degraded", res, err)
	}
	_, err = l.Acquire(ctx, limiter.Request{Key: "k", Limit: lim, Cost: 1, OnStoreFailure: limiter.Deny})
	if !errors.Is(err, limiter.ErrStoreUnavailable) {
		t.Errorf("Acquire(Deny) with Redis down: error = %v, want ErrStoreUnavailable", err)
	}

	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := s.Take(ctx, "k", lim, 1, 0)
		if err == nil {
			// The restarted Redis lost its data: a fresh bucket.
			if want := int64(9); !res.Allowed || res.Remaining != want {
				t.Errorf("Take after restart = %+v, want allowed with %d remaining", res, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Take still failing 10s after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // broken pooled connections are dropped one by one
	}
}

// TestContextCanceled checks that a canceled context comes back from the
// Limiter as the context's error, not as a store failure.
func TestContextCanceled(t *testing.T) {
	srv := redistest.Start(t)
	s := redisstore.New(srv.Client())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l := limiter.New(s)
	_, err := l.Acquire(ctx, limiter.Request{Key: "k", Limit: limiter.Limit{MaxCalls: 1, Window: time.Second}, Cost: 1})
	if !errors.Is(err, context.Canceled) || errors.Is(err, limiter.ErrStoreUnavailable) {
		t.Errorf("Acquire with a canceled context: error = %v, want context.Canceled only", err)
	}
}

// TestDecisionBound: a batching store on a client that applies context
// deadlines to its connections (as internal/redisconn's clients do) bounds
// its decisions by its timeout; unbatched, or on a client that ignores
// deadlines, it does not. New contacts no Redis, so the address is never
// dialled.
func TestDecisionBound(t *testing.T) {
	const timeout = 150 * time.Millisecond
	withDeadlines := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	without := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}, ContextTimeoutEnabled: true})
	for _, c := range []interface{ Close() error }{withDeadlines, without, cluster} {
		t.Cleanup(func() { _ = c.Close() })
	}
	for _, tc := range []struct {
		name  string
		store *redisstore.Store
		want  time.Duration
	}{
		{"batching, deadlines applied", redisstore.New(withDeadlines, redisstore.WithTimeout(timeout)), timeout},
		{"Cluster, deadlines applied", redisstore.New(cluster, redisstore.WithTimeout(timeout)), timeout},
		{"batching, deadlines ignored", redisstore.New(without, redisstore.WithTimeout(timeout)), 0},
		{"unbatched", redisstore.New(withDeadlines, redisstore.WithTimeout(timeout), redisstore.WithBatching(false)), 0},
	} {
		if got := tc.store.DecisionBound(); got != tc.want {
			t.Errorf("%s: DecisionBound() = %v, want %v", tc.name, got, tc.want)
		}
	}
}
