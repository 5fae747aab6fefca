package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/topdeck/resilience/client"
	"github.com/topdeck/resilience/internal/redisconn"
	"github.com/topdeck/resilience/internal/redistest"
)

// TestTwoReplicasOnRedis runs two servers on one Redis and a Client on each:
// limits, breakers and the cache are shared, and a Redis outage leaves the
// callers with their values.
func TestTwoReplicasOnRedis(t *testing.T) {
	rs := redistest.Start(t)
	rdb, _, err := redisconn.Open(rs.URL(), redisconn.Timeouts{})
	if err != nil {
		t.Fatalf("redisconn.Open: %v", err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	a := client.New(mustService(t, testConfig, rdb).conn)
	b := client.New(mustService(t, testConfig, rdb).conn)
	ctx := ctxT(t)

	// One bucket for the fleet: 3 tokens between both replicas.
	lim := client.RateLimit{MaxCalls: 3, Window: time.Hour}
	allowed := 0
	for i := range 6 {
		c := a
		if i%2 == 1 {
			c = b
		}
		d, err := c.Check(ctx, "fleet/key", lim)
		if err != nil || d.Degraded {
			t.Fatalf("Check %d: got %+v, %v; want a shared decision", i, d, err)
		}
		if d.Allowed {
			allowed++
		}
	}
	if allowed != 3 {
		t.Errorf("allowed across replicas: got %d, want 3", allowed)
	}

	// A breaker opened through one replica is open on the other.
	for range 2 {
		_ = a.Do(ctx, "fleet/breaker", func(context.Context) error { return errUpstream })
	}
	called := false
	err = b.Do(ctx, "fleet/breaker", func(context.Context) error { called = true; return nil })
	if !errors.Is(err, client.ErrOpen) || called {
		t.Errorf("Do on the other replica: got %v (called %v), want ErrOpen without calling", err, called)
	}

	// The cache is shared too.
	if err := client.SetJSON(ctx, a.Cache(), "fleet/cached", 7, time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, found, err := client.GetJSON[int](ctx, b.Cache(), "fleet/cached"); err != nil || !found || v != 7 {
		t.Errorf("GetJSON on the other replica: got %v, %v, %v; want 7, true", v, found, err)
	}

	// Redis down: the service answers degraded; the caller still gets its
	// value from the loader, and limits are decided by the replica.
	rs.Kill()
	loads := 0
	v, err := client.GetOrLoad(ctx, b.Cache(), "fleet/other", time.Minute, func(context.Context) (int, error) { loads++; return 9, nil })
	if err != nil || v != 9 || loads != 1 {
		t.Errorf("GetOrLoad with Redis down: got %v, %v (loads %d); want 9 from one load", v, err, loads)
	}
	it, err := b.Cache().Get(ctx, "fleet/cached")
	if err != nil || it.Found || !it.Degraded {
		t.Errorf("Get with Redis down: got %+v, %v; want a degraded miss", it, err)
	}
	d, err := a.Check(ctx, "fleet/down", lim)
	if err != nil || !d.Allowed || !d.Degraded || d.Local {
		t.Errorf("Check with Redis down: got %+v, %v; want allowed, degraded by the service (not local)", d, err)
	}
}
