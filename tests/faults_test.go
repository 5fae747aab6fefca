package tests

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/internal/redistest"
)

// The fault suite: Redis hung, paused, out of memory, evicting and
// restarted empty, each under concurrent load. Killed is in
// TestLimiterRedisOutage, TestBreakerRedisOutage and TestCacheRedisOutage.
// Every answer must be a decision, a degraded decision (allow_local) or
// UNAVAILABLE (deny): never a store failure reported as "rate limited", and
// never DEADLINE_EXCEEDED while the caller's own deadline is far away.

// faultCall is one answer seen by faultLoad.
type faultCall struct {
	policy     string
	start, end time.Time
	resp       *resiliencev1.AcquireResponse
	err        error
}

// faultLoad runs callers goroutines calling Acquire in a loop, 2 ms apart,
// each on its own key (far below its limit, so a correct answer is always
// "allowed"), alternately on policies "lenient" (allow_local) and "strict"
// (deny), through the replicas in turn, each call with a 5 s deadline. stop
// ends the load and returns every answer.
func faultLoad(f *fleet, callers int) (stop func() []faultCall) {
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // protects calls
		calls []faultCall
	)
	for g := 0; g < callers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			policy := []string{"lenient", "strict"}[g%2]
			key := fmt.Sprintf("fault/%s/%d", policy, g)
			c := f.rs(g)
			for n := 0; ctx.Err() == nil && n < 100000; n++ {
				callCtx, cc := context.WithTimeout(ctx, 5*time.Second)
				start := time.Now()
				resp, err := c.Acquire(callCtx, &resiliencev1.AcquireRequest{Key: key, Policy: policy})
				end := time.Now()
				cc()
				if err != nil && ctx.Err() != nil {
					return
				}
				mu.Lock()
				calls = append(calls, faultCall{policy, start, end, resp, err})
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}(g)
	}
	return func() []faultCall {
		cancel()
		wg.Wait()
		return calls
	}
}

// faultReport sums up the answers of faultLoad.
type faultReport struct {
	total, exact, degraded, unavailable int
	wrongDeny                           int     // "rate limited" far below the limit: a store failure disguised
	deadline                            int     // DEADLINE_EXCEEDED with the caller's deadline far away
	other                               []error // anything else
	slow                                int     // calls over 250 ms
	max, p99After                       time.Duration
}

// summarize checks every answer and measures latency, p99After over the
// calls that started after the first one that took longer than 150 ms
// (once the first store timeout has been seen).
func summarize(calls []faultCall) faultReport {
	var r faultReport
	var firstSlow time.Time
	for _, c := range calls {
		if d := c.end.Sub(c.start); d > 150*time.Millisecond && (firstSlow.IsZero() || c.end.Before(firstSlow)) {
			firstSlow = c.end
		}
	}
	var after []time.Duration
	for _, c := range calls {
		r.total++
		d := c.end.Sub(c.start)
		r.max = max(r.max, d)
		if d > 250*time.Millisecond {
			r.slow++
		}
		if !firstSlow.IsZero() && c.start.After(firstSlow) {
			after = append(after, d)
		}
		switch {
		case c.err == nil && !c.resp.GetAllowed():
			r.wrongDeny++
		case c.err == nil && c.resp.GetDegraded():
			r.degraded++
		case c.err == nil:
			r.exact++
		case status.Code(c.err) == codes.Unavailable:
			r.unavailable++
		case status.Code(c.err) == codes.DeadlineExceeded:
			r.deadline++
		default:
			r.other = append(r.other, c.err)
		}
	}
	if len(after) > 0 {
		sort.Slice(after, func(i, j int) bool { return after[i] < after[j] })
		r.p99After = after[len(after)*99/100]
	}
	return r
}

func (r faultReport) String() string {
	return fmt.Sprintf("%d calls: %d exact, %d degraded, %d UNAVAILABLE, %d wrongly denied, %d DEADLINE_EXCEEDED, %d other; %d over 250 ms, max %s, p99 after the first timeout %s",
		r.total, r.exact, r.degraded, r.unavailable, r.wrongDeny, r.deadline, len(r.other), r.slow, r.max.Round(time.Millisecond), r.p99After.Round(time.Millisecond))
}

// checkNoDisguise fails the test for any answer that hides a store failure.
func (r faultReport) checkNoDisguise(t *testing.T) {
	t.Helper()
	if r.wrongDeny > 0 {
		t.Errorf("%d calls answered 'rate limited' far below the limit: a store failure disguised as a decision", r.wrongDeny)
	}
	if r.deadline > 0 {
		t.Errorf("%d calls answered DEADLINE_EXCEEDED with 5 s left: the store's own timeout must be UNAVAILABLE", r.deadline)
	}
	if len(r.other) > 0 {
		t.Errorf("unexpected errors: %v", r.other[:min(3, len(r.other))])
	}
}

// waitExact waits until every replica answers exactly (not degraded) again
// and returns how long that took.
func waitExact(t *testing.T, f *fleet, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for i := range f.replicas {
		eventually(t, within, fmt.Sprintf("replica %d still not exact after Redis came back", i), func() bool {
			resp, err := f.rs(i).Acquire(context.Background(), &resiliencev1.AcquireRequest{Key: "fault/after", Policy: "strict"})
			return err == nil && resp.GetAllowed() && !resp.GetDegraded()
		})
	}
	return time.Since(start)
}

// recovered waits until f answers exactly again, then ends the load of stop
// and checks that none of its answers was disguised; after says what ended
// the fault, for the log.
func recovered(t *testing.T, f *fleet, stop func() []faultCall, after string) faultReport {
	t.Helper()
	back := waitExact(t, f, 10*time.Second)
	r := summarize(stop())
	t.Logf("%s; exact again %s after %s", r, back.Round(time.Millisecond), after)
	r.checkNoDisguise(t)
	return r
}

// stall runs one Redis stall (hung or paused) of 3 s under the load of 32
// callers on two replicas and checks the answers.
func stall(t *testing.T, begin func(f *fleet), end func(f *fleet)) {
	f := startFleet(t, 2, limiterConfig)
	stop := faultLoad(f, 32)
	time.Sleep(300 * time.Millisecond)
	begin(f)
	time.Sleep(3 * time.Second)
	end(f)
	r := recovered(t, f, stop, "Redis answered")
	if r.degraded == 0 || r.unavailable == 0 {
		t.Errorf("got %d degraded and %d UNAVAILABLE answers: want both (allow_local and deny limits) while Redis hangs", r.degraded, r.unavailable)
	}
	// Only the calls in flight when Redis stopped, and one probe per
	// replica and component per second after that, may wait out the store
	// timeout: not every call. (The latency goals themselves, 250 ms at
	// most and p99 under 50 ms, are measured in docs/benchmarks.md: a
	// timed assertion flakes on a loaded 2-core machine under -race.)
	if limit := 32 + 2*2*5; r.slow > limit {
		t.Errorf("%d calls took over 250 ms (max %s): want at most %d; every call waits on the hung Redis", r.slow, r.max, limit)
	}
	if r.max > 2*time.Second {
		t.Errorf("slowest call took %s: calls hang on the stalled Redis", r.max)
	}
}

func TestFaultRedisHung(t *testing.T) {
	stall(t, func(f *fleet) { f.redis.Freeze() }, func(f *fleet) { f.redis.Thaw() })
}

func TestFaultRedisPaused(t *testing.T) {
	var admin *redistestClient
	stall(t, func(f *fleet) {
		admin = newAdmin(t, f.redis)
		if err := admin.Do(context.Background(), "CLIENT", "PAUSE", "3000", "ALL").Err(); err != nil {
			t.Fatalf("CLIENT PAUSE: %v", err)
		}
	}, func(f *fleet) {})
}

// TestFaultRedisOutOfMemory fills a noeviction Redis until it refuses
// writes: health says NOT_SERVING for redis, GetStats says degraded, every
// Acquire is a degraded decision or UNAVAILABLE by its policy; once memory
// is given back, everything is exact again.
func TestFaultRedisOutOfMemory(t *testing.T) {
	f := startFleet(t, 2, limiterConfig)
	admin := newAdmin(t, f.redis)
	ctx := ctxT(t, 60*time.Second)
	used, err := admin.InfoField(ctx, "memory", "used_memory")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "CONFIG", "SET", "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "CONFIG", "SET", "maxmemory", fmt.Sprint(used+2<<20)).Err(); err != nil {
		t.Fatal(err)
	}
	value := []byte(strings.Repeat("x", 100<<10))
	for i := 0; i < 100; i++ { // 10 MB: far beyond the 2 MB of headroom
		if admin.Do(ctx, "SET", fmt.Sprintf("filler:%d", i), value).Err() != nil {
			break
		}
	}
	// The SET that was refused counted its own 100 KB argument; once it is
	// freed, used memory is back under maxmemory and small writes succeed
	// again. Lower maxmemory under what is now used, so that every write
	// is refused for as long as the test needs, and check that it is.
	full, err := admin.InfoField(ctx, "memory", "used_memory")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "CONFIG", "SET", "maxmemory", fmt.Sprint(full-1<<20)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "SET", "small", "1").Err(); err == nil || !strings.HasPrefix(err.Error(), "OOM") {
		t.Fatalf("a small SET on the full Redis: got %v, want OOM", err)
	}
	stop := faultLoad(f, 16)
	for i := range f.replicas {
		h := healthpb.NewHealthClient(f.replicas[i].conn)
		eventually(t, 10*time.Second, "health redis still SERVING with Redis refusing writes", func() bool {
			resp, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: "redis"})
			return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
		})
		st, err := f.cs(i).GetStats(ctx, &resiliencev1.GetStatsRequest{})
		if err != nil || !st.GetDegraded() {
			t.Errorf("replica %d GetStats with Redis refusing writes: got %v, %v; want degraded", i, st, err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if err := admin.Do(ctx, "CONFIG", "SET", "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	r := recovered(t, f, stop, "memory was given back")
	if r.degraded == 0 || r.unavailable == 0 {
		t.Errorf("got %d degraded and %d UNAVAILABLE: want both while Redis refuses writes", r.degraded, r.unavailable)
	}
	for i := range f.replicas {
		h := healthpb.NewHealthClient(f.replicas[i].conn)
		eventually(t, 10*time.Second, "health redis not SERVING again after memory was given back", func() bool {
			resp, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: "redis"})
			return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
		})
	}
}

// TestFaultRedisEvicting: a limits Redis that may evict keys is reported at
// start-up (an error log line, resilience_store_evictable 1) or refused with
// --redis-eviction refuse; with the cache on its own Redis (the documented
// setup), cache pressure on an evicting cache Redis never costs a limit its
// state.
func TestFaultRedisEvicting(t *testing.T) {
	ctx := ctxT(t, 60*time.Second)
	evicting := redistest.Start(t)
	admin := newAdmin(t, evicting)
	for _, kv := range [][2]string{{"maxmemory-policy", "allkeys-lru"}, {"maxmemory", "3mb"}} {
		if err := admin.Do(ctx, "CONFIG", "SET", kv[0], kv[1]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	cfg := writeConfig(t, "limits:\n  tight:\n    max_calls: 10\n    time_window: 60s\n")

	t.Run("warned", func(t *testing.T) {
		r := startReplica(t, "--redis-url", evicting.URL(), "--config", cfg)
		eventually(t, 5*time.Second, "no error log line about eviction", func() bool {
			for _, l := range r.LogLines() {
				if l["level"] == "ERROR" && strings.Contains(fmt.Sprint(l["msg"]), "may evict") {
					return true
				}
			}
			return false
		})
		_, body := httpGet(t, "http://"+r.metricsAddr+"/metrics")
		if !strings.Contains(body, "resilience_store_evictable 1") {
			t.Errorf("/metrics: want resilience_store_evictable 1")
		}
	})

	t.Run("refused", func(t *testing.T) {
		out, err := runResilienced(t, "--listen", "127.0.0.1:0", "--metrics-listen", "", "--redis-url", evicting.URL(), "--redis-eviction", "refuse")
		if err == nil || !strings.Contains(out, "noeviction") {
			t.Errorf("--redis-eviction refuse on an evicting Redis: got %v, output %q; want exit 1 naming noeviction", err, out)
		}
	})

	t.Run("cache on its own Redis", func(t *testing.T) {
		limits := redistest.Start(t)
		la := newAdmin(t, limits)
		if err := la.Do(ctx, "CONFIG", "SET", "maxmemory-policy", "noeviction").Err(); err != nil {
			t.Fatal(err)
		}
		r := startReplica(t, "--redis-url", limits.URL(), "--cache-redis-url", evicting.URL(), "--config", cfg)
		rs := resiliencev1.NewResilienceServiceClient(r.conn)
		cs := resiliencev1.NewCacheServiceClient(r.conn)
		value := []byte(strings.Repeat("v", 100<<10))
		allowed := 0
		for i := 0; i < 60; i++ {
			if _, err := cs.Set(ctx, &resiliencev1.SetRequest{Key: fmt.Sprintf("big/%d", i), Value: value}); err != nil {
				t.Fatalf("cache Set: %v", err)
			}
			resp, err := rs.Acquire(ctx, &resiliencev1.AcquireRequest{Key: "evict/tight", Policy: "tight"})
			if err != nil {
				t.Fatalf("Acquire: %v", err)
			}
			if resp.GetDegraded() {
				t.Fatalf("Acquire degraded with both Redis up: %v", resp)
			}
			if resp.GetAllowed() {
				allowed++
			}
		}
		// 10 per 60 s, burst 10: at most 10 plus what refills in the
		// test's few seconds.
		if allowed > 11 {
			t.Errorf("admitted %d of 60 under 10 per 60 s while the cache Redis evicted: limits lost their state", allowed)
		}
		_, body := httpGet(t, "http://"+r.metricsAddr+"/metrics")
		if !strings.Contains(body, "resilience_store_evictable 0") {
			t.Errorf("/metrics: want resilience_store_evictable 0 for a noeviction limits Redis")
		}
	})
}

// TestFaultRedisRestartedEmpty: a Redis that comes back empty is detected
// (an error log line, resilience_store_data_loss_total), and no breaker
// generation is reused, so an outcome from before the loss is ignored.
func TestFaultRedisRestartedEmpty(t *testing.T) {
	f := startFleet(t, 2, "breakers:\n  default:\n    failure_threshold: 2\n    recovery_timeout: 60s\n")
	ctx := ctxT(t, 60*time.Second)
	rs := f.rs(0)
	var gen uint64
	for i := 0; i < 2; i++ {
		resp, err := rs.Acquire(ctx, &resiliencev1.AcquireRequest{Breaker: "lost"})
		if err != nil {
			t.Fatal(err)
		}
		gen = resp.GetBreakerGeneration()
		if _, err := rs.ReportOutcome(ctx, &resiliencev1.ReportOutcomeRequest{Breaker: "lost", Outcome: resiliencev1.Outcome_OUTCOME_FAILURE, BreakerGeneration: gen}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := rs.BreakerState(ctx, &resiliencev1.BreakerStateRequest{Breaker: "lost"})
	if err != nil || st.GetStatus().GetState() != resiliencev1.CircuitState_CIRCUIT_STATE_OPEN {
		t.Fatalf("BreakerState after 2 failures: got %v, %v; want OPEN", st, err)
	}
	openGen := st.GetStatus().GetGeneration()
	time.Sleep(1500 * time.Millisecond) // both replicas have read the epoch
	f.redis.Kill()
	f.redis.Restart()

	for i, r := range f.replicas {
		eventually(t, 10*time.Second, fmt.Sprintf("replica %d never logged the data loss", i), func() bool {
			for _, l := range r.LogLines() {
				if l["level"] == "ERROR" && strings.Contains(fmt.Sprint(l["msg"]), "lost its data") {
					return true
				}
			}
			return false
		})
		code, body := httpGet(t, "http://"+r.metricsAddr+"/metrics")
		if code != http.StatusOK || !strings.Contains(body, "resilience_store_data_loss_total 1") {
			t.Errorf("replica %d /metrics: want resilience_store_data_loss_total 1", i)
		}
	}
	// The breaker starts again, but on a generation never used before.
	var after uint64
	eventually(t, 10*time.Second, "no exact breaker answer after the restart", func() bool {
		resp, err := rs.Acquire(ctx, &resiliencev1.AcquireRequest{Breaker: "lost"})
		after = resp.GetBreakerGeneration()
		return err == nil && !resp.GetDegraded()
	})
	if after <= openGen {
		t.Errorf("generation after the loss is %d, not above %d from before it: generations repeat", after, openGen)
	}
	resp, err := rs.ReportOutcome(ctx, &resiliencev1.ReportOutcomeRequest{Breaker: "lost", Outcome: resiliencev1.Outcome_OUTCOME_FAILURE, BreakerGeneration: gen})
	if err != nil || !resp.GetIgnored() {
		t.Errorf("an outcome of generation %d from before the loss: got %v, %v; want ignored", gen, resp, err)
	}
}

// redistestClient is an admin connection to a test Redis.
type redistestClient struct{ *redis.Client }

// newAdmin returns an admin connection to s, closed when the test ends.
func newAdmin(t *testing.T, s *redistest.Server) *redistestClient {
	t.Helper()
	return &redistestClient{s.Client()}
}

// InfoField reads one integer field of an INFO section.
func (c *redistestClient) InfoField(ctx context.Context, section, field string) (int64, error) {
	info, err := c.Info(ctx, section).Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("INFO %s has no %s", section, field)
}

// runResilienced runs resilienced with args until it exits (at most 15 s)
// and returns its output.
func runResilienced(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "resilienced"), args...)
	cmd.Env = append(os.Environ(), "RESILIENCE_LISTEN=", "RESILIENCE_REDIS_URL=", "RESILIENCE_CONFIG=", "RESILIENCE_METRICS_LISTEN=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}
