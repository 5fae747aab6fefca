package tests

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/internal/redistest"
)

// scaleConfig is limiterConfig's limits under a prefix of their own, with a
// default breaker.
const scaleConfig = `
redis_key_prefix: "sc:"` + limiterConfig + `breakers:
  default:
    failure_threshold: 3
    recovery_timeout: 30s
`

// scalePrefix is redis_key_prefix of scaleConfig.
const scalePrefix = "sc:"

// deployment is a Redis deployment (Cluster or Sentinel) with two replicas
// of resilienced on it.
type deployment struct {
	redis    redis.UniversalClient // direct access, to inspect keys
	replicas [2]*replica
	// forEachMaster runs fn on every master.
	forEachMaster func(ctx context.Context, fn func(ctx context.Context, m *redis.Client) error) error
	// failover kills the master that holds redisKey and returns once a
	// replica has taken over, with how long that took.
	failover func(t *testing.T, redisKey string) time.Duration
	// sameShard reports whether two Redis keys live on the same master.
	sameShard func(a, b string) bool
}

func (d *deployment) rs(i int) resiliencev1.ResilienceServiceClient {
	return resiliencev1.NewResilienceServiceClient(d.replicas[i%2].conn)
}

func (d *deployment) cs(i int) resiliencev1.CacheServiceClient {
	return resiliencev1.NewCacheServiceClient(d.replicas[i%2].conn)
}

func startDeployment(t *testing.T, url string) *deployment {
	t.Helper()
	d := &deployment{}
	cfg := writeConfig(t, scaleConfig)
	for i := range d.replicas {
		d.replicas[i] = startReplica(t, "--redis-url", url, "--redis-dial-timeout", testDialTimeout, "--config", cfg)
	}
	return d
}

// The service on Redis Cluster (3 masters, 1 replica each) and on Sentinel
// (master, replica, 3 sentinels): the limiter, breaker and cache checks of
// a fleet, then a master failover under load. The two deployments run one
// after the other (in parallel, the 2-core machine starves the limiter's
// 100ms Redis timeout); the subtests of each share one deployment and run in
// order.
func TestScale(t *testing.T) {
	t.Run("Cluster", func(t *testing.T) {
		c := redistest.StartCluster(t, 3, 1)
		d := startDeployment(t, c.URL())
		cc := c.Client()
		d.redis = cc
		d.forEachMaster = cc.ForEachMaster
		d.failover = func(t *testing.T, key string) time.Duration {
			killed, took := c.KillMasterOf(key)
			t.Logf("killed master %s; replica %s promoted, cluster ok after %s", killed.Addr(), c.MasterOf(key).Addr(), took.Round(time.Millisecond))
			return took
		}
		d.sameShard = func(a, b string) bool { return c.MasterOf(a) == c.MasterOf(b) }
		runScaleChecks(t, d, 3)
	})
	t.Run("Sentinel", func(t *testing.T) {
		s := redistest.StartSentinel(t)
		d := startDeployment(t, s.URL())
		sc := s.Client()
		d.redis = sc
		d.forEachMaster = func(ctx context.Context, fn func(context.Context, *redis.Client) error) error { return fn(ctx, sc) }
		d.failover = func(t *testing.T, _ string) time.Duration {
			killed, took := s.KillMaster()
			t.Logf("killed master %s; sentinels report %s after %s", killed.Addr(), s.Master().Addr(), took.Round(time.Millisecond))
			return took
		}
		d.sameShard = func(a, b string) bool { return true }
		runScaleChecks(t, d, 1)
	})
}

func runScaleChecks(t *testing.T, d *deployment, masters int) {
	ctx := ctxT(t, 50*time.Second)
	// One watcher for the whole run, on replica 1: it must see transitions
	// made through replica 0, before and after the failover.
	events := watchBreakers(t, ctx, d.rs(1), "sc-")
	ok := t.Run("LimiterExact", func(t *testing.T) { checkLimiterExact(t, d) }) &&
		t.Run("BreakerShared", func(t *testing.T) { checkBreakerShared(t, ctx, d, "sc-before", events) }) &&
		t.Run("Cache", func(t *testing.T) { checkCacheSharded(t, ctx, d, masters) }) &&
		t.Run("FailoverUnderLoad", func(t *testing.T) { checkFailoverUnderLoad(t, d) })
	if !ok {
		return
	}
	t.Run("BreakerAfterFailover", func(t *testing.T) {
		// The watcher started before the failover still receives events,
		// and a breaker opened through one replica is open on the other.
		checkBreakerShared(t, ctx, d, "sc-after", events)
	})
}

// checkLimiterExact floods one key through both replicas: admitted <=
// burst + rate*t and not far below.
func checkLimiterExact(t *testing.T, d *deployment) {
	floodOneKey(t, d.rs, "scale/exact", "shared", 20, 100, 8, 1500*time.Millisecond)
}

// watchBreakers opens WatchBreakers on rs and returns its events, in a
// channel closed when the stream ends.
func watchBreakers(t *testing.T, ctx context.Context, rs resiliencev1.ResilienceServiceClient, prefix string) <-chan *resiliencev1.BreakerEvent {
	t.Helper()
	w, err := rs.WatchBreakers(ctx, &resiliencev1.WatchBreakersRequest{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Header(); err != nil {
		t.Fatal(err)
	}
	events := make(chan *resiliencev1.BreakerEvent, 64)
	go func() {
		defer close(events)
		for {
			ev, err := w.Recv()
			if err != nil {
				return
			}
			select {
			case events <- ev.GetEvent():
			case <-ctx.Done():
				return
			}
		}
	}()
	return events
}

// checkBreakerShared opens breaker name with failures reported through
// replica 0 and checks that replica 1 rejects calls and that the watcher
// (on replica 1) sees CLOSED -> OPEN.
func checkBreakerShared(t *testing.T, ctx context.Context, d *deployment, name string, events <-chan *resiliencev1.BreakerEvent) {
	t.Helper()
	acq := &resiliencev1.AcquireRequest{Breaker: name}
	var gen uint64
	for i := 0; i < 2; i++ {
		eventually(t, 10*time.Second, fmt.Sprintf("replica %d: no exact CLOSED answer", i), func() bool {
			resp, err := d.rs(i).Acquire(ctx, acq)
			gen = resp.GetBreakerGeneration()
			return err == nil && resp.GetAllowed() && !resp.GetDegraded() && resp.GetBreakerState() == resiliencev1.CircuitState_CIRCUIT_STATE_CLOSED
		})
	}
	for i := 0; i < 3; i++ {
		r, err := d.rs(0).ReportOutcome(ctx, &resiliencev1.ReportOutcomeRequest{Breaker: name, Outcome: resiliencev1.Outcome_OUTCOME_FAILURE, BreakerGeneration: gen})
		if err != nil || r.GetIgnored() {
			t.Fatalf("failure %d through replica 0: got %v, %v; want counted", i+1, r, err)
		}
	}
	eventually(t, 3*time.Second, "replica 1 still admits after the breaker opened through replica 0", func() bool {
		resp, err := d.rs(1).Acquire(ctx, acq)
		return err == nil && !resp.GetAllowed() && !resp.GetDegraded() && resp.GetReason() == resiliencev1.AcquireReason_ACQUIRE_REASON_CIRCUIT_OPEN
	})
	timeout := time.After(5 * time.Second)
	for {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatalf("the watch on replica 1 ended; want %s CLOSED -> OPEN", name)
			}
			if e.GetBreaker() != name {
				continue // an earlier breaker's event
			}
			if e.GetFrom() != resiliencev1.CircuitState_CIRCUIT_STATE_CLOSED || e.GetTo() != resiliencev1.CircuitState_CIRCUIT_STATE_OPEN {
				t.Fatalf("event: got %v, want %s CLOSED -> OPEN", e, name)
			}
			return
		case <-timeout:
			t.Fatalf("the watcher on replica 1 saw no %s CLOSED -> OPEN within 5s", name)
		}
	}
}

// checkCacheSharded: set on one replica, get on the other; DeletePattern("*")
// removes every cache key from every master and nothing else.
func checkCacheSharded(t *testing.T, ctx context.Context, d *deployment, masters int) {
	a, b := d.cs(0), d.cs(1)
	if r, err := a.Set(ctx, &resiliencev1.SetRequest{Key: "projects/42", Value: []byte("topdeck")}); err != nil || !r.GetStored() {
		t.Fatalf("Set: %v, %v", r, err)
	}
	if got, err := b.Get(ctx, &resiliencev1.GetRequest{Key: "projects/42"}); err != nil || !got.GetFound() || string(got.GetValue()) != "topdeck" {
		t.Fatalf("Get on the other replica: got %v, %v; want topdeck", got, err)
	}
	const n = 40
	for i := 0; i < n; i++ {
		if r, err := d.cs(i).Set(ctx, &resiliencev1.SetRequest{Key: fmt.Sprintf("items/%d", i), Value: []byte("v")}); err != nil || !r.GetStored() {
			t.Fatalf("Set items/%d: %v, %v", i, r, err)
		}
	}
	// Keys outside the cache: same prefix but not "<prefix>cache:", and
	// another prefix; on several slots.
	outside := []string{scalePrefix + "cacheX", scalePrefix + "other:1", "unrelated:cache:1", "unrelated:2", "sc:cache"}
	for _, k := range outside {
		if err := d.redis.Set(ctx, k, "keep", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	perMaster := cacheKeysPerMaster(t, ctx, d)
	if len(perMaster) != masters {
		t.Errorf("cache keys on %d masters, want all %d: %v", len(perMaster), masters, perMaster)
	}
	total := 0
	for _, c := range perMaster {
		total += c
	}
	if total != n+1 {
		t.Errorf("found %d cache keys in Redis, want %d", total, n+1)
	}
	del, err := b.DeletePattern(ctx, &resiliencev1.DeletePatternRequest{Pattern: "*"})
	if err != nil || del.GetDeleted() != n+1 {
		t.Fatalf("DeletePattern *: got %v, %v; want %d deleted", del, err, n+1)
	}
	if left := cacheKeysPerMaster(t, ctx, d); len(left) != 0 {
		t.Errorf("after DeletePattern *, cache keys left per master: %v", left)
	}
	for _, k := range outside {
		if v, err := d.redis.Get(ctx, k).Result(); err != nil || v != "keep" {
			t.Errorf("DeletePattern * touched %s, outside the cache: got %q, %v", k, v, err)
		}
	}
	if got, err := a.Get(ctx, &resiliencev1.GetRequest{Key: "projects/42"}); err != nil || got.GetFound() {
		t.Errorf("Get after DeletePattern *: got %v, %v; want not found", got, err)
	}
}

// cacheKeysPerMaster counts the keys under "<prefix>cache:" on each master
// (only masters that hold some).
func cacheKeysPerMaster(t *testing.T, ctx context.Context, d *deployment) map[string]int {
	t.Helper()
	var mu sync.Mutex
	out := map[string]int{}
	err := d.forEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		keys, err := scanAll(ctx, m, scalePrefix+"cache:*")
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			mu.Lock()
			out[m.Options().Addr] = len(keys)
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("scan masters: %v", err)
	}
	return out
}

func scanAll(ctx context.Context, c *redis.Client, match string) ([]string, error) {
	var out []string
	iter := c.Scan(ctx, 0, match, 100).Iterator()
	for iter.Next(ctx) {
		out = append(out, iter.Val())
	}
	return out, iter.Err()
}

// answer classes in checkFailoverUnderLoad.
const (
	ansExact = iota
	ansDegraded
	ansUnavailable
	ansWrongDeny
	ansError
)

type sample struct {
	start, end time.Time
	kind       int
	err        error
}

// checkFailoverUnderLoad kills the master of the limiter keys while callers
// run Acquire through both replicas: no call hangs, answers are degraded
// (allow_local) or UNAVAILABLE (deny) for a few seconds at most, never
// "rate limited", then exact again.
func checkFailoverUnderLoad(t *testing.T, d *deployment) {
	// Both keys on the master that will be killed, which also carries the
	// breaker watchers' subscription (on Cluster, the master of the events
	// channel's slot): the watch must survive the failover.
	channel := scalePrefix + "breaker-events"
	keys := map[string]string{}
	for _, policy := range []string{"lenient", "strict"} {
		for i := 0; keys[policy] == ""; i++ {
			if k := fmt.Sprintf("fo/%s/%d", policy, i); d.sameShard(limiterKey(k), channel) {
				keys[policy] = k
			}
		}
	}
	var samples []sample
	stop := acquireLoad(func(g int) resiliencev1.ResilienceServiceClient { return d.rs(g / 2) },
		func(policy string) string { return keys[policy] },
		func(policy string, start, end time.Time, resp *resiliencev1.AcquireResponse, err error) {
			s := sample{start: start, end: end}
			switch {
			case err == nil && resp.GetDegraded():
				s.kind = ansDegraded
			case err == nil && !resp.GetAllowed():
				s.kind = ansWrongDeny
			case err == nil:
				s.kind = ansExact
			case status.Code(err) == codes.Unavailable && policy == "strict":
				s.kind = ansUnavailable
			default:
				s.kind, s.err = ansError, err
			}
			samples = append(samples, s)
		})
	defer stop()
	time.Sleep(300 * time.Millisecond)
	killAt := time.Now()
	took := d.failover(t, channel)
	failedOver := time.Now()
	// Back to exact answers on both replicas, for both keys.
	for i := 0; i < 2; i++ {
		for policy, key := range keys {
			eventually(t, 10*time.Second, fmt.Sprintf("replica %d still not exact for %s after the failover", i, policy), func() bool {
				resp, err := d.rs(i).Acquire(context.Background(), &resiliencev1.AcquireRequest{Key: key, Policy: policy})
				return err == nil && resp.GetAllowed() && !resp.GetDegraded()
			})
		}
	}
	recovered := time.Now()
	// And it stays exact.
	time.Sleep(500 * time.Millisecond)
	stop()

	var (
		slowest         time.Duration
		count           [5]int
		firstBad        time.Time
		lastBad         time.Time
		errs            []error
		badAfterRecover int
	)
	for _, s := range samples {
		slowest = max(slowest, s.end.Sub(s.start))
		count[s.kind]++
		if s.kind == ansExact {
			continue
		}
		if firstBad.IsZero() || s.end.Before(firstBad) {
			firstBad = s.end
		}
		if s.end.After(lastBad) {
			lastBad = s.end
		}
		if s.start.After(recovered) {
			badAfterRecover++
		}
		if s.err != nil && len(errs) < 3 {
			errs = append(errs, s.err)
		}
	}
	window := time.Duration(0)
	if !lastBad.IsZero() {
		window = lastBad.Sub(firstBad)
	}
	t.Logf("failover under load: %d calls, slowest %s; %d exact, %d degraded, %d UNAVAILABLE; "+
		"not exact for %s (first %s after the kill, last %s after the kill; failover took %s, all exact %s after it)",
		len(samples), slowest.Round(time.Millisecond), count[ansExact], count[ansDegraded], count[ansUnavailable],
		window.Round(time.Millisecond), sinceOrZero(firstBad, killAt), sinceOrZero(lastBad, killAt),
		took.Round(time.Millisecond), recovered.Sub(failedOver).Round(time.Millisecond))
	if count[ansWrongDeny] > 0 {
		t.Errorf("%d calls were answered 'rate limited' far below the limit: a store failure reported as a denial", count[ansWrongDeny])
	}
	if count[ansError] > 0 {
		t.Errorf("%d calls failed with an unexpected error, e.g. %v", count[ansError], errs)
	}
	if badAfterRecover > 0 {
		t.Errorf("%d answers were not exact after both replicas had recovered", badAfterRecover)
	}
	// Generous for a loaded 2-core machine with -race: the point is that
	// nothing waits for the failover.
	if slowest > time.Second {
		t.Errorf("slowest Acquire took %s: calls hang during the failover", slowest)
	}
}

// limiterKey is the Redis key of the limiter's bucket for key.
func limiterKey(key string) string { return scalePrefix + "rl:{" + key + "}" }

func sinceOrZero(t, from time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return t.Sub(from).Round(time.Millisecond)
}
