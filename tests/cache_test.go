package tests

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

func TestCacheAcrossReplicas(t *testing.T) {
	f := startFleet(t, 2, "redis_key_prefix: \"td:\"\n")
	ctx := ctxT(t, 30*time.Second)
	a, b := f.cs(0), f.cs(1)

	// Set on one replica, get on the other.
	if r, err := a.Set(ctx, &resiliencev1.SetRequest{Key: "projects/42", Value: []byte(`{"name":"topdeck"}`)}); err != nil || !r.GetStored() {
		t.Fatalf("Set: %v, %v", r, err)
	}
	got, err := b.Get(ctx, &resiliencev1.GetRequest{Key: "projects/42"})
	if err != nil || !got.GetFound() || string(got.GetValue()) != `{"name":"topdeck"}` {
		t.Fatalf("Get on the other replica: %v, %v", got, err)
	}
	if ttl := got.GetTtl().AsDuration(); ttl <= 4*time.Minute || ttl > 5*time.Minute {
		t.Errorf("ttl with ttl 0 on Set: got %s, want the default 5m", ttl)
	}

	// TTL expiry.
	if _, err := a.Set(ctx, &resiliencev1.SetRequest{Key: "short", Value: []byte("x"), Ttl: durationpb.New(300 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	if r, _ := b.Get(ctx, &resiliencev1.GetRequest{Key: "short"}); !r.GetFound() {
		t.Fatalf("short-lived key missing before its ttl")
	}
	eventually(t, 3*time.Second, "key still found after its ttl", func() bool {
		r, err := b.Get(ctx, &resiliencev1.GetRequest{Key: "short"})
		return err == nil && !r.GetFound()
	})

	// Pattern delete removes exactly the matching keys, and nothing outside
	// the cache's prefix.
	rdb := f.redis.Client()
	if err := rdb.Set(ctx, "td:cacheX", "other", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, "unrelated:projects/1", "other", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"projects/1", "projects/2", "projects/10", "builds/1"} {
		if _, err := b.Set(ctx, &resiliencev1.SetRequest{Key: k, Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	del, err := a.DeletePattern(ctx, &resiliencev1.DeletePatternRequest{Pattern: "projects/?"})
	if err != nil || del.GetDeleted() != 2 {
		t.Fatalf("DeletePattern projects/?: got %v, %v; want 2 (projects/1, projects/2)", del, err)
	}
	for k, want := range map[string]bool{"projects/1": false, "projects/2": false, "projects/10": true, "projects/42": true, "builds/1": true} {
		if r, _ := b.Get(ctx, &resiliencev1.GetRequest{Key: k}); r.GetFound() != want {
			t.Errorf("after DeletePattern, %s found=%v, want %v", k, r.GetFound(), want)
		}
	}
	del, err = b.DeletePattern(ctx, &resiliencev1.DeletePatternRequest{Pattern: "*"})
	if err != nil || del.GetDeleted() != 3 {
		t.Fatalf("DeletePattern *: got %v, %v; want 3", del, err)
	}
	for _, k := range []string{"td:cacheX", "unrelated:projects/1"} {
		if n, _ := rdb.Exists(ctx, k).Result(); n != 1 {
			t.Errorf("DeletePattern * removed %s, outside the cache's keys", k)
		}
	}
}

func TestCacheStatsAddUpAcrossReplicas(t *testing.T) {
	f := startFleet(t, 2, "")
	ctx := ctxT(t, 30*time.Second)
	if _, err := f.cs(0).Set(ctx, &resiliencev1.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		_, _ = f.cs(0).Get(ctx, &resiliencev1.GetRequest{Key: "k"})  // hit
		_, _ = f.cs(1).Get(ctx, &resiliencev1.GetRequest{Key: "k"})  // hit
		_, _ = f.cs(1).Get(ctx, &resiliencev1.GetRequest{Key: "no"}) // miss
	}
	// Each replica flushes its counts within a second; any replica sees the total.
	eventually(t, 3*time.Second, "fleet-wide stats do not add up", func() bool {
		for i := 0; i < 2; i++ {
			st, err := f.cs(i).GetStats(ctx, &resiliencev1.GetStatsRequest{})
			if err != nil || st.GetHits() != 6 || st.GetMisses() != 3 || st.GetSets() != 1 || st.GetKeys() != 1 || st.GetDegraded() {
				return false
			}
		}
		return true
	})
}

func TestCacheRedisOutage(t *testing.T) {
	f := startFleet(t, 1, "")
	ctx := ctxT(t, 30*time.Second)
	c := f.cs(0)
	if _, err := c.Set(ctx, &resiliencev1.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	f.redis.Kill()
	t0 := time.Now()
	got, err := c.Get(ctx, &resiliencev1.GetRequest{Key: "k"})
	if err != nil || got.GetFound() || !got.GetDegraded() {
		t.Errorf("Get with Redis down: got %v, %v; want not found, degraded", got, err)
	}
	set, err := c.Set(ctx, &resiliencev1.SetRequest{Key: "k2", Value: []byte("v")})
	if err != nil || set.GetStored() || !set.GetDegraded() {
		t.Errorf("Set with Redis down: got %v, %v; want not stored, degraded", set, err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("Get+Set with Redis down took %s", d)
	}
	st, err := c.GetStats(ctx, &resiliencev1.GetStatsRequest{})
	if err != nil || !st.GetDegraded() || st.GetErrors() < 2 {
		t.Errorf("stats with Redis down: got %v, %v; want degraded with the errors counted", st, err)
	}
	f.redis.Restart()
	eventually(t, 5*time.Second, "cache still degraded after Redis came back", func() bool {
		r, err := c.Set(context.Background(), &resiliencev1.SetRequest{Key: "k3", Value: []byte("v")})
		return err == nil && r.GetStored()
	})
	got, err = c.Get(ctx, &resiliencev1.GetRequest{Key: "k3"})
	if err != nil || !got.GetFound() || got.GetDegraded() {
		t.Errorf("Get after Redis came back: got %v, %v", got, err)
	}
}
