package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/breaker/redisstore"
	"github.com/topdeck/resilience/breaker/storetest"
	"github.com/topdeck/resilience/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var prefixSeq atomic.Int64

// uniquePrefix gives each store its own key space on a shared server.
func uniquePrefix() string { return fmt.Sprintf("t%d:", prefixSeq.Add(1)) }

func newStore(t *testing.T, srv *redistest.Server, opts ...redisstore.Option) *redisstore.Store {
	t.Helper()
	s := redisstore.New(srv.Client(), append([]redisstore.Option{redisstore.WithPrefix(uniquePrefix())}, opts...)...)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// watchAll starts a watch of every breaker of s, ended when t ends, and
// returns its events.
func watchAll(t *testing.T, s *redisstore.Store) <-chan breaker.Event {
	t.Helper()
	ch, err := s.Watch(t.Context(), "")
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	return ch
}

func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	storetest.Run(t, func(t *testing.T, now func() time.Time) breaker.Store {
		return newStore(t, srv, redisstore.WithClockForTesting(now))
	})
}

// TestConformanceCluster runs the suite on a 3-master Redis Cluster: each
// breaker's keys share its hash tag, while the registry (List, Prune) and the
// events channel live elsewhere, and List's pipeline of status scripts is
// split per node.
func TestConformanceCluster(t *testing.T) {
	client := redistest.StartCluster(t, 3, 0).Client()
	storetest.Run(t, func(t *testing.T, now func() time.Time) breaker.Store {
		s := redisstore.New(client, redisstore.WithPrefix(uniquePrefix()), redisstore.WithClockForTesting(now))
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

var settings = breaker.Settings{FailureThreshold: 2, RecoveryTimeout: 30 * time.Second, ProbeTimeout: 5 * time.Second}

func TestRedisTimeIsTheClock(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv) // no test clock: Redis TIME
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if _, err := s.Report(ctx, "b", settings, breaker.OutcomeFailure, 0, ""); err != nil {
			t.Fatalf("Report: %v", err)
		}
	}
	a, err := s.Allow(ctx, "b", settings)
	if err != nil {
		t.Fatalf("Allow: %v", err)
	}
	if a.Allowed || a.State != breaker.StateOpen || a.RetryAfter <= 0 || a.RetryAfter > settings.RecoveryTimeout {
		t.Fatalf("Allow when open: got %+v, want denied with 0 < RetryAfter <= %v", a, settings.RecoveryTimeout)
	}
	st, err := s.Status(ctx, "b", settings)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if d := time.Since(st.OpenedAt); d < -time.Minute || d > time.Minute {
		t.Fatalf("OpenedAt from Redis TIME: got %v, want within a minute of now", st.OpenedAt)
	}
}

func TestKeysAndTTL(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	s := redisstore.New(c, redisstore.WithPrefix("p:"), redisstore.WithIdleTTL(time.Hour))
	if _, err := s.Allow(ctx, "svc", settings); err != nil {
		t.Fatalf("Allow: %v", err)
	}
	if _, err := s.Report(ctx, "svc", settings, breaker.OutcomeSuccess, 0, ""); err != nil {
		t.Fatalf("Report: %v", err)
	}
	// The first use stores the generation (so that it never repeats after a
	// data loss); calls that change nothing write nothing after it.
	if got := c.HGetAll(ctx, "p:br:{svc}:s").Val(); got["gen"] == "" || got["st"] != "0" || got["fail"] != "0" {
		t.Fatalf("state after only successes: got %v, want CLOSED with its generation and no failures", got)
	}
	if ttl := c.PTTL(ctx, "p:br:{svc}:s").Val(); ttl < time.Hour || ttl > time.Hour+settings.RecoveryTimeout+settings.ProbeTimeout {
		t.Fatalf("TTL of a CLOSED breaker's state: got %v, want about idle TTL + recovery + probe timeout", ttl)
	}
	if got := c.ZRange(ctx, "p:breakers", 0, -1).Val(); len(got) != 1 || got[0] != "svc" {
		t.Fatalf("registry: got %v, want [svc]", got)
	}
	if ttl := c.PTTL(ctx, "p:br:{svc}:r").Val(); ttl < time.Hour || ttl > time.Hour+15*time.Minute {
		t.Fatalf("TTL of the registration marker: got %v, want idle TTL + a quarter of it (1h15m)", ttl)
	}
	for i := 0; i < 2; i++ {
		if _, err := s.Report(ctx, "svc", settings, breaker.OutcomeFailure, 0, ""); err != nil {
			t.Fatalf("Report: %v", err)
		}
	}
	ttl := c.PTTL(ctx, "p:br:{svc}:s").Val()
	min := time.Hour + settings.RecoveryTimeout
	if ttl < min-time.Minute || ttl > min+time.Minute {
		t.Fatalf("TTL of an OPEN breaker: got %v, want about idle TTL + recovery + probe timeout (>= %v)", ttl, min)
	}
}

func TestOutageReturnsErrorsThenRecovers(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv)
	ctx := context.Background()
	if _, err := s.Allow(ctx, "b", settings); err != nil {
		t.Fatalf("Allow before outage: %v", err)
	}
	srv.Kill()
	calls := []struct {
		name string
		fn   func() error
	}{
		{"Allow", func() error { _, err := s.Allow(ctx, "b", settings); return err }},
		{"Report", func() error {
			_, err := s.Report(ctx, "b", settings, breaker.OutcomeFailure, 0, "")
			return err
		}},
		{"Status", func() error { _, err := s.Status(ctx, "b", settings); return err }},
		{"Reset", func() error { _, err := s.Reset(ctx, "b", settings, breaker.StateOpen); return err }},
		{"Release", func() error { return s.Release(ctx, "b", "1.1") }},
		{"List", func() error { _, _, err := s.List(ctx, "", 10, ""); return err }},
		{"Watch", func() error { _, err := s.Watch(ctx, ""); return err }},
	}
	for _, c := range calls {
		start := time.Now()
		err := c.fn()
		if !errors.Is(err, breaker.ErrStoreUnavailable) {
			t.Fatalf("%s during outage: got error %v, want ErrStoreUnavailable", c.name, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("%s during outage took %v, want a quick error", c.name, d)
		}
	}
	srv.Restart()
	// Redis lost its data: the breaker is CLOSED again, and the name is
	// registered again for List.
	var a breaker.Admission
	var err error
	for i := 0; i < 50; i++ {
		if a, err = s.Allow(ctx, "b", settings); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || !a.Allowed || a.State != breaker.StateClosed {
		t.Fatalf("Allow after restart: got %+v, %v; want allowed CLOSED", a, err)
	}
	sts, _, err := s.List(ctx, "", 10, "")
	if err != nil || len(sts) != 1 || sts[0].Name != "b" {
		t.Fatalf("List after restart: got %v, %v; want [b]", sts, err)
	}
}

func TestWatchAcrossClientsAndStores(t *testing.T) {
	srv := redistest.Start(t)
	prefix := uniquePrefix()
	clock := storetest.NewClock(storetest.Epoch)
	writer := redisstore.New(srv.Client(), redisstore.WithPrefix(prefix), redisstore.WithClockForTesting(clock.Now))
	watcher := redisstore.New(srv.Client(), redisstore.WithPrefix(prefix))
	t.Cleanup(func() { _ = watcher.Close() })
	other := redisstore.New(srv.Client(), redisstore.WithPrefix(uniquePrefix()))

	ctx := t.Context()
	ch := watchAll(t, watcher)
	if _, err := other.Reset(ctx, "x", settings, breaker.StateOpen); err != nil { // another prefix: unseen
		t.Fatalf("Reset: %v", err)
	}
	st, err := writer.Reset(ctx, "svc", settings, breaker.StateOpen)
	if err != nil {
		t.Fatalf("Reset: %v", err)
	}
	storetest.WantEvent(t, storetest.NextEvent(t, ch, 5*time.Second), breaker.Event{
		Name: "svc", From: breaker.StateClosed, To: breaker.StateOpen, Generation: st.Generation, Reason: breaker.ReasonReset, At: storetest.Epoch,
	})
	if err := watcher.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range ch { // Close ends the watch: the channel closes
	}
}

func TestPruneForgetsIdleNames(t *testing.T) {
	t.Run("Redis", func(t *testing.T) { checkPrune(t, redistest.Start(t).Client()) })
	// On Cluster the registry, each breaker's keys and the lock live in
	// different slots.
	t.Run("Cluster", func(t *testing.T) { checkPrune(t, redistest.StartCluster(t, 3, 0).Client()) })
}

func checkPrune(t *testing.T, c redis.UniversalClient) {
	ctx := context.Background()
	const idle = 200 * time.Millisecond
	s := redisstore.New(c, redisstore.WithPrefix(uniquePrefix()), redisstore.WithIdleTTL(idle))
	t.Cleanup(func() { _ = s.Close() })
	other := redisstore.New(c, redisstore.WithPrefix("other:"), redisstore.WithIdleTTL(idle))
	t.Cleanup(func() { _ = other.Close() })

	// idle: used once, CLOSED, with timeouts so short that its state expires
	// with its marker. busy: used again just before the prune. open: OPEN
	// with a recovery timeout that keeps its state.
	short := breaker.Settings{FailureThreshold: 2, RecoveryTimeout: time.Millisecond, ProbeTimeout: time.Millisecond}
	for _, n := range []string{"idle", "busy"} {
		if _, err := s.Allow(ctx, n, short); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Reset(ctx, "open", settings, breaker.StateOpen); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Allow(ctx, "idle", settings); err != nil {
		t.Fatal(err)
	}
	time.Sleep(idle + idle/4 + 50*time.Millisecond) // every marker and short state has expired
	if _, err := s.Allow(ctx, "busy", short); err != nil {
		t.Fatal(err)
	}

	removed, ran, err := s.Prune(ctx, 0)
	if err != nil || !ran || removed != 1 {
		t.Fatalf("Prune: got %d removed, ran %v, %v; want 1 removed", removed, ran, err)
	}
	sts, _, err := s.List(ctx, "", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, st := range sts {
		names = append(names, st.Name)
	}
	if got := strings.Join(names, ","); got != "busy,open" {
		t.Fatalf("List after Prune: got %s, want busy,open", got)
	}
	if got := c.ZRange(ctx, "other:breakers", 0, -1).Val(); len(got) != 1 {
		t.Fatalf("another prefix's registry: got %v, want it untouched", got)
	}

	// A name used again after being pruned is listed again.
	if _, err := s.Allow(ctx, "idle", settings); err != nil {
		t.Fatal(err)
	}
	if sts, _, _ := s.List(ctx, "idle", 0, ""); len(sts) != 1 {
		t.Fatalf("List after a pruned name came back: got %+v, want it", sts)
	}

	// With a period, one caller prunes per period.
	if _, ran, err := s.Prune(ctx, time.Minute); err != nil || !ran {
		t.Fatalf("first scheduled Prune: ran %v, %v; want it to run", ran, err)
	}
	if _, ran, err := s.Prune(ctx, time.Minute); err != nil || ran {
		t.Fatalf("second scheduled Prune within the period: ran %v, %v; want it skipped", ran, err)
	}
}

func TestPrunePagesThroughLargeRegistry(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	s := newStore(t, srv)
	// 1,234 names registered by some replica long gone: registry entries
	// without marker or state.
	prefix := strings.TrimSuffix(s.Channel(), "breaker-events")
	zs := make([]redis.Z, 1234)
	for i := range zs {
		zs[i] = redis.Z{Member: fmt.Sprintf("gone/%04d", i)}
	}
	if err := c.ZAdd(ctx, prefix+"breakers", zs...).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Allow(ctx, "gone/0500", settings); err != nil { // in use again
		t.Fatal(err)
	}
	removed, _, err := s.Prune(ctx, 0)
	if err != nil || removed != 1233 {
		t.Fatalf("Prune: got %d removed, %v; want 1233", removed, err)
	}
	if got := c.ZRange(ctx, prefix+"breakers", 0, -1).Val(); len(got) != 1 || got[0] != "gone/0500" {
		t.Fatalf("registry after Prune: got %v, want [gone/0500]", got)
	}
}

func TestNamesWithBraces(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv)
	ctx := context.Background()
	for _, n := range []string{"a}b", "{x}", "ünï/cødé", "sp ace"} {
		if _, err := s.Reset(ctx, n, settings, breaker.StateOpen); err != nil {
			t.Fatalf("Reset(%q): %v", n, err)
		}
		st, err := s.Status(ctx, n, settings)
		if err != nil || st.State != breaker.StateOpen {
			t.Fatalf("Status(%q): got %+v, %v; want OPEN", n, st, err)
		}
	}
	sts, _, err := s.List(ctx, "", 0, "")
	if err != nil || len(sts) != 4 {
		t.Fatalf("List: got %d, %v; want 4", len(sts), err)
	}
}

func TestListPrefixBounds(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv)
	ctx := context.Background()
	names := []string{"a", "a\xff", "a\xff\xffz", "ab", "b"}
	for _, n := range names {
		if _, err := s.Allow(ctx, n, settings); err != nil {
			t.Fatalf("Allow: %v", err)
		}
	}
	sts, _, err := s.List(ctx, "a\xff", 0, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var got []string
	for _, st := range sts {
		got = append(got, st.Name)
	}
	if want := "a\xff,a\xff\xffz"; strings.Join(got, ",") != want {
		t.Fatalf("List with prefix a\\xff: got %q, want %q", got, want)
	}
}

func TestWatchSurvivesRestartWithResync(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv)
	ctx := t.Context()
	ch := watchAll(t, s)
	srv.Kill()
	srv.Restart()
	select {
	case e := <-ch:
		if e.Reason != breaker.ReasonResync || e.Name != "" {
			t.Fatalf("first event after a restart: got %v, want a resync marker", e)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no resync marker within 20s of a restart")
	}
	st, err := s.Reset(ctx, "b", settings, breaker.StateOpen)
	if err != nil {
		t.Fatalf("Reset: %v", err)
	}
	storetest.WantEvent(t, storetest.NextEvent(t, ch, 5*time.Second), breaker.Event{
		Name: "b", From: breaker.StateClosed, To: breaker.StateOpen, Generation: st.Generation, Reason: breaker.ReasonReset,
	})
}

// A Sentinel failover that leaves the old master running (SENTINEL FAILOVER)
// does not close the watch's connection to it: the heartbeat notices that the
// watch no longer hears the master, subscribes again (a resync) and events
// flow again within seconds.
func TestWatchFollowsSentinelFailover(t *testing.T) {
	sen := redistest.StartSentinel(t)
	s := redisstore.New(sen.Client(), redisstore.WithPrefix(uniquePrefix()))
	t.Cleanup(func() { _ = s.Close() })
	ctx := t.Context()
	ch := watchAll(t, s)
	sen.Failover()
	start := time.Now()
	// Without the heartbeat the watch stays deaf until Sentinel demotes the
	// old master, about 10s after the failover.
	deadline := start.Add(7 * time.Second)
	for i := 0; ; i++ {
		name := fmt.Sprintf("b%d", i)
		if _, err := s.Reset(ctx, name, settings, breaker.StateOpen); err == nil {
			wait := time.After(500 * time.Millisecond)
		drain:
			for {
				select {
				case e := <-ch:
					if e.Name == name {
						t.Logf("event from the new master %s after the failover", time.Since(start).Round(time.Millisecond))
						return
					}
				case <-wait:
					break drain
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event from the new master within 7s of a failover")
		}
	}
}

// After Redis lost its data, the breaker is CLOSED again at a generation
// above every earlier one: outcomes of calls admitted before the loss are
// stale, and a new transition never reuses a generation a watcher has seen.
func TestGenerationsNeverRepeatAfterDataLoss(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv) // Redis TIME
	c := srv.Client()
	ctx := context.Background()
	slow, err := s.Allow(ctx, "b", settings) // a call admitted while CLOSED
	if err != nil {
		t.Fatal(err)
	}
	open, err := s.Reset(ctx, "b", settings, breaker.StateOpen)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Status(ctx, "b", settings); err != nil || st.State != breaker.StateClosed || st.Generation != 0 {
		t.Fatalf("Status after FLUSHALL: got %+v, %v; want CLOSED without state (generation 0)", st, err)
	}
	a, err := s.Allow(ctx, "b", settings)
	if err != nil || a.State != breaker.StateClosed || a.Generation <= open.Generation {
		t.Fatalf("Allow after FLUSHALL: got %+v, %v; want CLOSED at a generation above %d", a, err, open.Generation)
	}
	for _, g := range []uint64{slow.Generation, open.Generation} {
		r, err := s.Report(ctx, "b", settings, breaker.OutcomeFailure, g, "")
		if err != nil || !r.Ignored || r.IgnoredReason != breaker.IgnoredStaleGeneration {
			t.Fatalf("FAILURE of generation %d from before the loss: got %+v, %v; want ignored (stale)", g, r, err)
		}
	}
	if st, _ := s.Status(ctx, "b", settings); st.ConsecutiveFailures != 0 || st.Generation != a.Generation {
		t.Fatalf("Status after stale outcomes: got %+v, want no failures at generation %d", st, a.Generation)
	}
}

// pubsubClients counts the Redis connections in pub/sub mode.
func pubsubClients(t *testing.T, c redis.UniversalClient) int {
	t.Helper()
	list, err := c.Do(context.Background(), "CLIENT", "LIST", "TYPE", "pubsub").Text()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	return strings.Count(list, "\n")
}

// Any number of watchers of one Store share one subscription: one Redis
// connection (400 streams once exhausted maxclients), and each gets the
// events.
func TestWatchersShareOneSubscription(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	s := newStore(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if n := pubsubClients(t, c); n != 0 {
		t.Fatalf("pub/sub connections before any Watch: got %d, want 0", n)
	}
	const watchers = 50
	chans := make([]<-chan breaker.Event, watchers)
	for i := range chans {
		prefix := ""
		if i%2 == 1 {
			prefix = "svc"
		}
		ch, err := s.Watch(ctx, prefix)
		if err != nil {
			t.Fatalf("Watch %d: %v", i, err)
		}
		chans[i] = ch
	}
	if n := pubsubClients(t, c); n != 1 {
		t.Fatalf("pub/sub connections for %d watchers: got %d, want 1", watchers, n)
	}
	st, err := s.Reset(ctx, "svc", settings, breaker.StateOpen)
	if err != nil {
		t.Fatal(err)
	}
	for i, ch := range chans {
		e := storetest.NextEvent(t, ch, 5*time.Second)
		if e.Name != "svc" || e.Generation != st.Generation {
			t.Fatalf("watcher %d: got %v, want the reset of svc at generation %d", i, e, st.Generation)
		}
	}
	// Announce reaches every watcher whose prefix matches, without Redis.
	s.Announce(breaker.Event{Name: "svc", From: breaker.StateOpen, To: breaker.StateClosed, Reason: breaker.ReasonDataLoss})
	for i, ch := range chans {
		if e := storetest.NextEvent(t, ch, 5*time.Second); e.Reason != breaker.ReasonDataLoss {
			t.Fatalf("watcher %d after Announce: got %v, want the announced event", i, e)
		}
	}
	cancel()
	for _, ch := range chans {
		for range ch { // each channel closes with its context
		}
	}
}
