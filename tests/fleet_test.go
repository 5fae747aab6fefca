package tests

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/internal/redistest"
	"github.com/topdeck/resilience/internal/testkit"
)

// fleet is several replicas sharing one Redis.
type fleet struct {
	redis    *redistest.Server
	replicas []*replica
}

// testDialTimeout is the --redis-dial-timeout of the fleet tests.
const testDialTimeout = "500ms"

// startFleet starts n replicas of resilienced on one private redis-server,
// all with the configuration yaml.
func startFleet(t *testing.T, n int, yaml string) *fleet {
	t.Helper()
	f := &fleet{redis: redistest.Start(t)}
	// A longer dial bound than production's 100 ms: a loaded 2-core CI
	// machine under -race can take that long to accept, and one failed dial
	// sends a replica to its fallback for the retry interval.
	args := []string{"--redis-url", f.redis.URL(), "--redis-dial-timeout", testDialTimeout}
	if yaml != "" {
		args = append(args, "--config", writeConfig(t, yaml))
	}
	for i := 0; i < n; i++ {
		f.replicas = append(f.replicas, startReplica(t, args...))
	}
	return f
}

// rs returns the ResilienceService client of replica i.
func (f *fleet) rs(i int) resiliencev1.ResilienceServiceClient {
	return resiliencev1.NewResilienceServiceClient(f.replicas[i%len(f.replicas)].conn)
}

// cs returns the CacheService client of replica i.
func (f *fleet) cs(i int) resiliencev1.CacheServiceClient {
	return resiliencev1.NewCacheServiceClient(f.replicas[i%len(f.replicas)].conn)
}

// eventually polls cond every 20ms until it holds or d has passed.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// flood is the result of floodOneKey.
type flood struct {
	allowed, denied int64
	elapsed         time.Duration
}

// floodOneKey has callers call Acquire(key, policy) in a loop for runFor,
// caller g through client(g), and checks that the fleet admitted at most
// burst + rate*t and no more than 0.2 s worth of calls fewer (the flood
// starts within the first 200 ms and keeps the bucket empty), that the flood
// reached the limit, and that no answer was degraded (Redis is up).
func floodOneKey(t *testing.T, client func(g int) resiliencev1.ResilienceServiceClient, key, policy string, burst, rate float64, callers int, runFor time.Duration) flood {
	t.Helper()
	var allowed, denied atomic.Int64
	start := time.Now()
	stop := start.Add(runFor)
	for _, err := range testkit.Parallel(callers, func(g int) error {
		c := client(g)
		for time.Now().Before(stop) {
			resp, err := c.Acquire(context.Background(), &resiliencev1.AcquireRequest{Key: key, Policy: policy})
			if err != nil {
				return fmt.Errorf("Acquire: %v", err)
			}
			if resp.GetDegraded() {
				return fmt.Errorf("got a degraded answer with Redis up: %v", resp)
			}
			if resp.GetAllowed() {
				allowed.Add(1)
			} else {
				denied.Add(1)
			}
		}
		return nil
	}) {
		t.Error(err)
	}
	f := flood{allowed: allowed.Load(), denied: denied.Load(), elapsed: time.Since(start)}
	upper := burst + rate*f.elapsed.Seconds()
	lower := burst + rate*(f.elapsed.Seconds()-0.2)
	t.Logf("%d callers for %s: %d allowed, %d denied; bound [%.0f, %.0f]", callers, f.elapsed.Round(time.Millisecond), f.allowed, f.denied, lower, upper)
	if got := float64(f.allowed); got > upper {
		t.Errorf("admitted %v, more than burst + rate*t = %.1f", got, upper)
	} else if got < lower {
		t.Errorf("admitted %v, fewer than %.1f: the limiter under-admits", got, lower)
	}
	if f.denied == 0 {
		t.Errorf("no call was denied: the flood did not reach the limit")
	}
	return f
}

// acquireLoad starts 8 callers that call Acquire in a loop, 5 ms apart, each
// call bounded at 5 s: even callers on policy "lenient" (allow_local), odd
// ones on "strict" (deny), caller g through client(g) on key(policy). Every
// answer goes to record, one at a time; errors of calls cut short by stop are
// not recorded. stop ends the load and waits for the callers.
func acquireLoad(client func(g int) resiliencev1.ResilienceServiceClient, key func(policy string) string,
	record func(policy string, start, end time.Time, resp *resiliencev1.AcquireResponse, err error)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg sync.WaitGroup
		mu sync.Mutex // serialises record
	)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			policy := "lenient"
			if g%2 == 1 {
				policy = "strict"
			}
			for ctx.Err() == nil {
				callCtx, cc := context.WithTimeout(ctx, 5*time.Second)
				start := time.Now()
				resp, err := client(g).Acquire(callCtx, &resiliencev1.AcquireRequest{Key: key(policy), Policy: policy})
				end := time.Now()
				cc()
				if err != nil && ctx.Err() != nil {
					return
				}
				mu.Lock()
				record(policy, start, end, resp, err)
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}(g)
	}
	return func() {
		cancel()
		wg.Wait()
	}
}
