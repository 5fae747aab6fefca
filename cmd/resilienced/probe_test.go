package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/topdeck/resilience/internal/redistest"
)

// fakeHealth records what a storeProbe reports.
type fakeHealth struct{ evictable bool }

func (*fakeHealth) SetStoreHealthy(bool)       {}
func (*fakeHealth) StoreDataLost()             {}
func (h *fakeHealth) SetStoreEvictable(e bool) { h.evictable = e }

// With --redis-eviction refuse, an evicting Redis keeps the store unhealthy
// on every round, not only on the rounds that re-read maxmemory-policy.
func TestProbeRefuseStaysUnhealthyBetweenPolicyChecks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := redistest.Start(t)
	c := srv.Client()
	defer c.Close()
	for _, kv := range [][2]string{{"maxmemory-policy", "allkeys-lru"}, {"maxmemory", "100mb"}} {
		if err := c.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	h := &fakeHealth{}
	p := &storeProbe{
		client: c, prefix: "probe-test:", health: h, every: time.Second, eviction: EvictionRefuse,
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), policyEvery: time.Hour,
	}
	for i := range 3 {
		if err := p.round(ctx); err == nil {
			t.Fatalf("round %d: got nil, want the eviction policy error", i)
		}
	}
	if !h.evictable {
		t.Error("SetStoreEvictable(true) was not reported")
	}
	if err := c.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.lastPolicy = time.Time{} // the next round re-reads the policy
	p.mu.Unlock()
	if err := p.round(ctx); err != nil {
		t.Fatalf("after noeviction: got %v, want nil", err)
	}
}
