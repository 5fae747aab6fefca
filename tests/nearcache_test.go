package tests

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/topdeck/resilience/client"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/internal/redistest"
)

// runNearCache runs k.Run until the test ends and waits until its near
// cache is live.
func runNearCache(t *testing.T, k *client.Cache) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = k.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	eventually(t, 15*time.Second, "near cache not live", k.NearCacheLive)
}

// TestNearCacheStaleness measures the staleness bound of the Go SDK's near
// cache across replicas: a value overwritten through replica A, how long a
// client on replica B goes on serving the old value from its memory, after
// A acknowledged the write. It logs the figures (docs/benchmarks.md records
// them) and asserts only a generous bound, plus what never depends on
// timing: once B has seen the new value it never serves the old one again,
// and B's Gets in between are served from memory (no RPC).
func TestNearCacheStaleness(t *testing.T) {
	f := startFleet(t, 2, "")
	ctx := ctxT(t, 120*time.Second)
	writer := f.cs(0)
	b := client.New(f.replicas[1].conn, client.WithCallTimeout(2*time.Second)).Cache()
	runNearCache(t, b)

	const rounds = 300
	const key = "stale/k"
	var afterAck, afterSend []time.Duration
	for i := range rounds {
		old, next := fmt.Sprint(i), fmt.Sprint(i+1)
		if i == 0 {
			if _, err := writer.Set(ctx, &resiliencev1.SetRequest{Key: key, Value: []byte(old)}); err != nil {
				t.Fatal(err)
			}
		}
		// B holds the old value in memory.
		waitGet(t, ctx, b, key, old)
		if it, _ := b.Get(ctx, key); string(it.Value) != old {
			t.Fatalf("round %d: got %q, want %q", i, it.Value, old)
		}
		sent := time.Now()
		if r, err := writer.Set(ctx, &resiliencev1.SetRequest{Key: key, Value: []byte(next)}); err != nil || !r.GetStored() {
			t.Fatalf("Set through A: %v, %v", r, err)
		}
		acked := time.Now()
		seen := waitGet(t, ctx, b, key, next)
		afterSend = append(afterSend, seen.Sub(sent))
		afterAck = append(afterAck, max(seen.Sub(acked), 0))
		for range 3 { // never the old value again
			if it, err := b.Get(ctx, key); err != nil || string(it.Value) != next {
				t.Fatalf("round %d: after the new value was seen, got %q, %v; want %q", i, it.Value, err, next)
			}
		}
	}
	p := func(d []time.Duration, q float64) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[min(len(s)-1, int(q*float64(len(s))))]
	}
	t.Logf("near cache staleness over %d overwrites through another replica: after the write was acknowledged p50 %v, p99 %v, max %v; after it was sent p50 %v, p99 %v, max %v",
		rounds, p(afterAck, 0.5), p(afterAck, 0.99), p(afterAck, 1), p(afterSend, 0.5), p(afterSend, 0.99), p(afterSend, 1))
	if p99 := p(afterAck, 0.99); p99 > time.Second {
		t.Errorf("staleness p99 %v, want well under 1s (goal 50ms)", p99)
	}
}

// waitGet reads key through k until it returns want, and returns when it
// first did. It polls with short pauses (bounded by 10s).
func waitGet(t *testing.T, ctx context.Context, k *client.Cache, key, want string) time.Time {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		it, err := k.Get(ctx, key)
		if err == nil && string(it.Value) == want {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get(%q): still %q, %v after 10s, want %q", key, it.Value, err, want)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// TestNearCacheInvalidationStream: the invalidation stream of a replica
// carries the writes of every replica, and a watcher sees a RESYNC first.
func TestNearCacheInvalidationStream(t *testing.T) {
	f := startFleet(t, 2, "")
	ctx := ctxT(t, 30*time.Second)
	stream, err := f.cs(1).WatchInvalidations(ctx, &resiliencev1.WatchInvalidationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	recv := func() *resiliencev1.Invalidation {
		t.Helper()
		r, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		return r.GetInvalidation()
	}
	if inv := recv(); inv.GetKind() != resiliencev1.InvalidationKind_INVALIDATION_KIND_RESYNC {
		t.Fatalf("first message: got %v, want RESYNC", inv)
	}
	a := f.cs(0)
	if _, err := a.Set(ctx, &resiliencev1.SetRequest{Key: "x", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Delete(ctx, &resiliencev1.DeleteRequest{Keys: []string{"x", "y"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.DeletePattern(ctx, &resiliencev1.DeletePatternRequest{Pattern: "x*"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		kind    resiliencev1.InvalidationKind
		keys    []string
		pattern string
	}{
		{resiliencev1.InvalidationKind_INVALIDATION_KIND_SET, []string{"x"}, ""},
		{resiliencev1.InvalidationKind_INVALIDATION_KIND_DELETE, []string{"x", "y"}, ""},
		{resiliencev1.InvalidationKind_INVALIDATION_KIND_DELETE_PATTERN, nil, "x*"},
	} {
		inv := recv()
		if inv.GetKind() != want.kind || !slices.Equal(inv.GetKeys(), want.keys) || inv.GetPattern() != want.pattern {
			t.Errorf("invalidation: got %v, want %v %q %q", inv, want.kind, want.keys, want.pattern)
		}
	}
}

// TestNearCacheInvalidationsPerTenant: a tenant's invalidation stream
// carries only its own tenant's writes, made through any replica.
func TestNearCacheInvalidationsPerTenant(t *testing.T) {
	rs := redistest.Start(t)
	cfg := writeConfig(t, securityConfig())
	r0 := startReplica(t, "--config", cfg, "--redis-url", rs.URL())
	r1 := startReplica(t, "--config", cfg, "--redis-url", rs.URL())
	ctx := ctxT(t, 30*time.Second)
	watch := func(token string) resiliencev1.CacheService_WatchInvalidationsClient {
		t.Helper()
		s, err := resiliencev1.NewCacheServiceClient(r1.conn).WatchInvalidations(as(ctx, token), &resiliencev1.WatchInvalidationsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if r, err := s.Recv(); err != nil || r.GetInvalidation().GetKind() != resiliencev1.InvalidationKind_INVALIDATION_KIND_RESYNC {
			t.Fatalf("first message as %s: got %v, %v; want RESYNC", token, r, err)
		}
		return s
	}
	aStream, bStream := watch("a-caller"), watch("b-caller")
	writer := resiliencev1.NewCacheServiceClient(r0.conn)
	for _, w := range []struct{ token, key string }{{"a-caller", "a-key"}, {"b-caller", "b-key"}} {
		if _, err := writer.Set(as(ctx, w.token), &resiliencev1.SetRequest{Key: w.key, Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	// Each stream's next message is its own tenant's write: had the other
	// tenant's (written first for b) leaked, it would come first.
	for _, s := range []struct {
		name   string
		stream resiliencev1.CacheService_WatchInvalidationsClient
		want   string
	}{{"a", aStream, "a-key"}, {"b", bStream, "b-key"}} {
		r, err := s.stream.Recv()
		if err != nil || !slices.Equal(r.GetInvalidation().GetKeys(), []string{s.want}) {
			t.Errorf("tenant %s's stream: got %v, %v; want only %s", s.name, r, err, s.want)
		}
	}
}
