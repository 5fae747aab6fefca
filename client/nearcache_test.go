package client_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/topdeck/resilience/client"
	"github.com/topdeck/resilience/internal/clocktest"
	"github.com/topdeck/resilience/internal/redisconn"
	"github.com/topdeck/resilience/internal/redistest"
)

const getMethod = "/topdeck.resilience.v1.CacheService/Get"

// runNear runs k.Run until the test ends and waits until its near cache is
// live.
func runNear(t *testing.T, k *client.Cache) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := k.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if k.NearCacheLive() || k.NearCacheLen() != 0 {
			t.Errorf("after Run returned: live %v with %d entries, want an empty near cache, not live", k.NearCacheLive(), k.NearCacheLen())
		}
	})
	waitNear(t, k, true)
}

func waitNear(t *testing.T, k *client.Cache, live bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); k.NearCacheLive() != live; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("near cache live: still %v after 15s, want %v", !live, live)
		}
	}
}

// getValue reads key through k and returns the value (or "" on a miss) and
// how many Gets the service received for it.
func getValue(t *testing.T, s *service, k *client.Cache, key string, opts ...client.GetOption) (string, int) {
	t.Helper()
	before := s.Calls(getMethod)
	it, err := k.Get(ctxT(t), key, opts...)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return string(it.Value), s.Calls(getMethod) - before
}

func TestNearCache(t *testing.T) {
	s := mustService(t, "", nil)
	reader := client.New(s.conn).Cache()
	writer := client.New(s.conn, client.WithoutNearCache()).Cache()
	ctx := ctxT(t)
	if err := writer.Set(ctx, "k", []byte("v1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, n := getValue(t, s, reader, "k"); n != 1 {
		t.Errorf("Get without Run: %d service Gets, want 1", n)
	}
	runNear(t, reader)
	if v, n := getValue(t, s, reader, "k"); v != "v1" || n != 1 {
		t.Errorf("first Get: got %q with %d service Gets, want v1 from the service", v, n)
	}
	if v, n := getValue(t, s, reader, "k"); v != "v1" || n != 0 {
		t.Errorf("second Get: got %q with %d service Gets, want v1 from memory", v, n)
	}
	if v, n := getValue(t, s, reader, "k", client.NoNearCache()); v != "v1" || n != 1 {
		t.Errorf("Get with NoNearCache: got %q with %d service Gets, want v1 from the service", v, n)
	}
	// Item.Value belongs to the caller.
	it, _ := reader.Get(ctx, "k")
	it.Value[0] = 'X'
	if v, _ := getValue(t, s, reader, "k"); v != "v1" {
		t.Errorf("Get after the caller modified a value: got %q, want v1", v)
	}

	// Another process's writes reach the near cache through the stream.
	for _, tt := range []struct {
		name  string
		write func() error
		want  string
	}{
		{"set", func() error { return writer.Set(ctx, "k", []byte("v2"), time.Minute) }, "v2"},
		{"delete", func() error { _, err := writer.Delete(ctx, "k"); return err }, ""},
		{"pattern", func() error {
			if err := writer.Set(ctx, "k", []byte("v3"), time.Minute); err != nil {
				return err
			}
			waitValue(t, reader, "k", "v3")
			_, err := writer.DeletePattern(ctx, "[jk]")
			return err
		}, ""},
	} {
		getValue(t, s, reader, "k") // held in memory (when found)
		if err := tt.write(); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		waitValue(t, reader, "k", tt.want)
	}

	// This process's own writes are read back at once.
	if err := reader.Set(ctx, "own", []byte("a"), time.Minute); err != nil {
		t.Fatal(err)
	}
	getValue(t, s, reader, "own")
	if err := reader.Set(ctx, "own", []byte("b"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, n := getValue(t, s, reader, "own"); v != "b" || n != 1 {
		t.Errorf("Get after its own Set: got %q with %d service Gets, want b from the service", v, n)
	}
	if err := reader.Run(ctx); err == nil {
		t.Errorf("a second Run while one runs: got nil, want an error")
	}
}

// waitValue waits (bounded) until k.Get(key) returns want ("" for a miss):
// the invalidation's arrival is asynchronous.
func waitValue(t *testing.T, k *client.Cache, key, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		it, err := k.Get(ctxT(t), key)
		if err == nil && string(it.Value) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get(%q): still %q, %v after 10s, want %q", key, it.Value, err, want)
		}
	}
}

func TestNearCacheHonoursTTL(t *testing.T) {
	s := mustService(t, "", nil)
	clock := clocktest.New(time.Now())
	k := client.New(s.conn, client.WithClock(clock.Now)).Cache()
	ctx := ctxT(t)
	// Writes before Run: the stream would bring their invalidations back
	// at some moment, which would drop what the test reads into memory.
	if err := k.Set(ctx, "short", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	runNear(t, k)
	getValue(t, s, k, "short")
	it, _ := k.Get(ctx, "short")
	if it.TTL <= 0 || it.TTL > time.Hour {
		t.Errorf("TTL from memory: got %v, want in (0, 1h]", it.TTL)
	}
	if _, n := getValue(t, s, k, "short"); n != 0 {
		t.Fatalf("Get within the TTL: %d service Gets, want 0", n)
	}
	clock.Advance(time.Hour) // past the TTL the service reported
	if _, n := getValue(t, s, k, "short"); n != 1 {
		t.Errorf("Get past the TTL: %d service Gets, want 1 (never served past its TTL)", n)
	}
}

func TestWithoutNearCache(t *testing.T) {
	s := mustService(t, "", nil)
	k := client.New(s.conn, client.WithoutNearCache()).Cache()
	if err := k.Run(ctxT(t)); err == nil {
		t.Errorf("Run WithoutNearCache: got nil, want an error")
	}
	if err := k.Set(ctxT(t), "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, n := getValue(t, s, k, "k"); n != 1 {
			t.Errorf("Get WithoutNearCache: %d service Gets, want 1", n)
		}
	}
}

func TestNearCacheBounds(t *testing.T) {
	s := mustService(t, "", nil)
	k := client.New(s.conn, client.WithNearCache(2, 0)).Cache()
	for _, key := range []string{"a", "b", "c"} {
		if err := k.Set(ctxT(t), key, []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	runNear(t, k)
	for _, key := range []string{"a", "b", "c"} {
		getValue(t, s, k, key)
	}
	if n := k.NearCacheLen(); n != 2 {
		t.Errorf("NearCacheLen with WithNearCache(2, 0): got %d, want 2", n)
	}
}

// With the replica's Redis down, its invalidation feed breaks: the stream
// ends, the near cache empties and Gets go to the service until both are
// back.
func TestNearCacheBypassedWhileTheStreamIsDown(t *testing.T) {
	rs := redistest.Start(t)
	rdb, _, err := redisconn.Open(rs.URL(), redisconn.Timeouts{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	s := mustService(t, "", rdb)
	k := client.New(s.conn).Cache()
	ctx := ctxT(t)
	// Written around the service, so that no invalidation of it comes
	// back on the stream later (which would drop what the test reads).
	if err := rdb.Set(ctx, "resilience:cache:k", "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	runNear(t, k)
	getValue(t, s, k, "k")
	if _, n := getValue(t, s, k, "k"); n != 0 {
		t.Fatalf("Get with everything up: %d service Gets, want 0", n)
	}
	rs.Kill()
	waitNear(t, k, false)
	it, err := k.Get(ctx, "k")
	if err != nil || it.Found || !it.Degraded {
		t.Errorf("Get with the stream down: got %+v, %v; want the service's degraded miss, not memory", it, err)
	}
	rs.Restart()
	waitNear(t, k, true)
	// The replica's store health may still say down for its retry
	// interval: Set until stored.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		err := k.Set(ctx, "k", []byte("again"), time.Minute)
		if err == nil {
			break
		}
		if !errors.Is(err, client.ErrDegraded) || time.Now().After(deadline) {
			t.Fatalf("Set after Redis came back: %v", err)
		}
	}
	waitValue(t, k, "k", "again")
}
