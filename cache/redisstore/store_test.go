package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/topdeck/resilience/cache"
	"github.com/topdeck/resilience/cache/redisstore"
	"github.com/topdeck/resilience/cache/storetest"
	"github.com/topdeck/resilience/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// prefixes gives each store of a suite its own prefix, with glob bytes in it
// so that the escaping of the prefix in SCAN MATCH is exercised.
func newPrefixer() func() string {
	var n atomic.Int64
	return func() string { return fmt.Sprintf("t[%d]*?\\:", n.Add(1)) }
}

func TestConformance(t *testing.T) {
	client := redistest.Start(t).Client()
	prefix := newPrefixer()
	storetest.Run(t, func(t *testing.T, _ func() time.Time) cache.Store {
		return redisstore.New(client, redisstore.WithPrefix(prefix()))
	})
}

// TestConformanceCluster runs the suite on a 3-master Redis Cluster, where
// DeletePattern and the statistics walk every master and the suite's keys
// land on different nodes.
func TestConformanceCluster(t *testing.T) {
	client := redistest.StartCluster(t, 3, 0).Client()
	prefix := newPrefixer()
	storetest.Run(t, func(t *testing.T, _ func() time.Time) cache.Store {
		return redisstore.New(client, redisstore.WithPrefix(prefix()))
	})
}

// startCluster starts a one-node Redis Cluster owning every slot. One node is
// enough to make Redis refuse cross-slot multi-key commands (CROSSSLOT) and
// to drive ClusterClient through ForEachMaster.
func startCluster(t *testing.T) *redis.ClusterClient {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found: %v", err)
	}
	dir := t.TempDir()
	port := redistest.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
		"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		t.Fatalf("cannot start redis-server: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	node := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond})
	defer node.Close()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for node.Ping(ctx).Err() != nil {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("cluster node not ready; log:\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := node.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
	}
	for {
		info, err := node.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not ok: %q, %v", info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:        []string{addr},
		DialTimeout:  200 * time.Millisecond,
		ReadTimeout:  500 * time.Millisecond,
		WriteTimeout: 500 * time.Millisecond,
	})
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Set(ctx, "{a}x", 1, 0).Err(); err != nil {
		t.Fatalf("cluster client: %v", err)
	}
	if err := c.Unlink(ctx, "a", "b", "c").Err(); err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("cross-slot UNLINK: got %v, want CROSSSLOT (the test cluster must enforce slots)", err)
	}
	return c
}

func TestKeyLayoutAndIsolation(t *testing.T) {
	ctx := context.Background()
	client := redistest.Start(t).Client()
	s := redisstore.New(client) // default prefix
	c, err := cache.New(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Set(ctx, "user:1", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := client.Get(ctx, "resilience:cache:user:1").Result(); err != nil || got != "v" {
		t.Errorf("GET resilience:cache:user:1: got %q, %v, want v", got, err)
	}
	if pttl, _ := client.PTTL(ctx, "resilience:cache:user:1").Result(); pttl <= 0 || pttl > time.Minute {
		t.Errorf("PTTL: got %v, want in (0, 1m]", pttl)
	}
	if got, _ := client.HGet(ctx, "resilience:{cache-stats}", "sets").Result(); got != "1" {
		t.Errorf("HGET resilience:{cache-stats} sets: got %q, want 1", got)
	}

	others := []string{
		"other:cache:user:2", "resilience:limiter:{x}:tat", "resilience:cachex",
		"resilience:cache", "cache:user:3", "resilience:breaker:{y}",
	}
	for _, k := range others {
		if err := client.Set(ctx, k, "keep", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Len(ctx); err != nil || n != 1 {
		t.Errorf("Len: got %d, %v, want 1 (only cache keys)", n, err)
	}
	r, err := c.DeletePattern(ctx, "*")
	if err != nil || r.Deleted != 1 || r.Degraded {
		t.Errorf("DeletePattern(*): got %+v, %v, want 1 deleted", r, err)
	}
	for _, k := range append(others, "resilience:{cache-stats}") {
		if n, _ := client.Exists(ctx, k).Result(); n != 1 {
			t.Errorf("key %q outside the cache: gone after DeletePattern(*), want kept", k)
		}
	}
}

// TestMatchAgreesWithRedis checks cache.Match against SCAN MATCH on a real
// server, key by key.
func TestMatchAgreesWithRedis(t *testing.T) {
	ctx := context.Background()
	client := redistest.Start(t).Client()
	keys := []string{
		"a", "ab", "a/b", "abc", "b", "-", "]", "[", "^", "\\", "a\\", "*", "?", "h*llo", "hello", "hallo",
		"[x]", "x", "a-b", "a]b", "y/z", "banana", "\xff",
	}
	patterns := []string{
		"*", "a*", "a*b", "*a*", "?", "??", "a?", "[ab]", "[^ab]", "[a-b]", "[b-a]", "[\\]]", "[\\-]",
		"[]", "[^]", "[ab", "[a-]", "a\\", "\\*", "\\?", "h\\*llo", "h[ae]llo", "\\[x\\]", "[x]",
		"a[-]b", "[x-z]*", "*\\\\", "\xff", "[\\", "*[", "a**b",
	}
	for i, k := range keys {
		if err := client.Set(ctx, "m:"+k, i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range patterns {
		var got []string
		iter := client.Scan(ctx, 0, "m:"+p, 1000).Iterator()
		for iter.Next(ctx) {
			got = append(got, strings.TrimPrefix(iter.Val(), "m:"))
		}
		if err := iter.Err(); err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, k := range keys {
			if cache.Match(p, k) {
				want = append(want, k)
			}
		}
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("pattern %q: Redis matched %q, cache.Match matched %q", p, got, want)
		}
	}
}

func TestKillRestart(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	client := srv.Client()
	// A short retry interval: the Cache calls the store again as soon as
	// it is back (TestHungStoreSkipped covers the skipping itself).
	c, err := cache.New(redisstore.New(client), cache.WithRetryInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := c.Set(ctx, "k", []byte("v"), time.Minute); err != nil || !r.Stored {
		t.Fatalf("Set: got %+v, %v, want stored", r, err)
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	srv.Kill()
	start := time.Now()
	g, err := c.Get(ctx, "k")
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("Get with Redis down took %v, want < 1s", elapsed)
	}
	if err != nil || g.Found || !g.Degraded || !errors.Is(g.Err, cache.ErrStoreUnavailable) {
		t.Errorf("Get with Redis down: got %+v, %v, want degraded not found", g, err)
	}
	start = time.Now()
	s, err := c.Set(ctx, "k2", []byte("v"), time.Minute)
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("Set with Redis down took %v, want < 1s", elapsed)
	}
	if err != nil || s.Stored || !s.Degraded {
		t.Errorf("Set with Redis down: got %+v, %v, want degraded not stored", s, err)
	}
	if err := c.Flush(ctx); err == nil {
		t.Errorf("Flush with Redis down: got nil, want an error")
	}
	if st, err := c.Stats(ctx); err == nil || st.Errors != 2 {
		t.Errorf("Stats with Redis down: got %+v, %v, want 2 local errors and an error", st, err)
	}

	srv.Restart() // the data is gone, the script cache too
	if r, err := c.Set(ctx, "k", []byte("again"), time.Minute); err != nil || !r.Stored {
		t.Fatalf("Set after restart: got %+v, %v, want stored", r, err)
	}
	g, err = c.Get(ctx, "k")
	if err != nil || !g.Found || string(g.Value) != "again" {
		t.Errorf("Get after restart: got %+v, %v, want again", g, err)
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatalf("Flush after restart: %v", err)
	}
	st, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The stats hash died with the server; what was kept locally survived.
	if want := (cache.Counters{Hits: 1, Sets: 1, Errors: 2}); st.Counters != want || st.Keys != 1 {
		t.Errorf("Stats after restart: got %+v, want %+v with 1 key", st, want)
	}
}

// TestHungStoreSkipped reproduces the hung-Redis report: with Redis stopped
// (SIGSTOP), every cache call waited out the store timeout. Now the first
// call pays it and the next ones answer degraded at once, without calling
// the store, until a probe after the retry interval finds it back.
func TestHungStoreSkipped(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	ctx := context.Background()
	const storeTimeout = 300 * time.Millisecond
	c, err := cache.New(redisstore.New(client), cache.WithStoreTimeout(storeTimeout), cache.WithRetryInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := c.Set(ctx, "k", []byte("v"), time.Minute); err != nil || !r.Stored {
		t.Fatalf("Set: got %+v, %v, want stored", r, err)
	}
	srv.Freeze()
	defer srv.Thaw()
	if g, err := c.Get(ctx, "k"); err != nil || !g.Degraded {
		t.Fatalf("first Get with Redis hung: got %+v, %v, want degraded", g, err)
	}
	if c.StoreHealthy() {
		t.Fatalf("StoreHealthy after a timed-out Get: got true, want false")
	}
	// Later calls never reach the store: each one answers before a store
	// timeout could have passed (a bound, not a measurement).
	for i := 0; i < 20; i++ {
		start := time.Now()
		g, err := c.Get(ctx, "k")
		s, serr := c.Set(ctx, "k", []byte("w"), time.Minute)
		if took := time.Since(start); took >= storeTimeout {
			t.Fatalf("call %d took %v with the store known hung: want no store call (timeout %v)", i, took, storeTimeout)
		}
		if err != nil || serr != nil || !g.Degraded || !s.Degraded || !errors.Is(g.Err, cache.ErrStoreUnavailable) {
			t.Fatalf("call %d: got %+v, %v / %+v, %v; want degraded answers", i, g, err, s, serr)
		}
	}
}

// A key read in the last millisecond before it expires has a PTTL of 0 in
// Redis (its remaining time, rounded down). The store must not report such
// a key as one without expiry (TTL 0): a memory layer or an SDK near cache
// would then keep the value long after Redis dropped it. Each key here is
// read in a tight loop from a few milliseconds before its expiry until it is
// gone; every read that finds it must carry a positive TTL.
func TestGetNearExpiryKeepsAnExpiry(t *testing.T) {
	ctx := context.Background()
	client := redistest.Start(t).Client()
	s := redisstore.New(client, redisstore.WithPrefix("near-expiry:"))
	var reads, last int
	for i := range 20 {
		key := fmt.Sprintf("k%d", i)
		if err := s.Set(ctx, key, []byte("v"), 5*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Second)
		for n := 0; n < 100_000 && time.Now().Before(deadline); n++ {
			e, found, err := s.Get(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if !found {
				break
			}
			reads++
			if e.TTL <= 0 {
				t.Fatalf("key %s found with TTL %v after it was set with a 5ms TTL: reported as a key without expiry", key, e.TTL)
			}
			if e.TTL <= time.Millisecond {
				last++
			}
		}
	}
	if reads == 0 {
		t.Fatal("no read found a key before its expiry")
	}
	t.Logf("%d reads found a key, %d of them in its last millisecond", reads, last)
}
