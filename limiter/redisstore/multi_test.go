package redisstore_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/topdeck/resilience/internal/redistest"
	"github.com/topdeck/resilience/limiter"
	"github.com/topdeck/resilience/limiter/redisstore"
	"github.com/topdeck/resilience/limiter/storetest"
)

// TestMultiConformance runs the suite of several limits, slots and pauses on
// one Redis node (one script per decision) and on a 3-master Cluster, where
// the suite's keys are on different slots (taken in order, given back).
func TestMultiConformance(t *testing.T) {
	var n atomic.Int64
	run := func(t *testing.T, client redis.Scripter) {
		storetest.RunMulti(t, newStores(client, &n, "multi", redisstore.WithTimeout(conformanceTimeout)))
	}
	t.Run("node", func(t *testing.T) { run(t, redistest.Start(t).Client()) })
	t.Run("cluster", func(t *testing.T) { run(t, redistest.StartCluster(t, 3, 0).Client()) })
}

// TestMultiOneRoundTrip checks that three limits on one node cost one
// script call.
func TestMultiOneRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	var calls atomic.Int64
	client.AddHook(countHook{&calls})
	s := redisstore.New(client, redisstore.WithPrefix("rt:"))
	lim := limiter.Limit{MaxCalls: 100, Window: time.Second}
	reqs := []limiter.Request{{Key: "a", Limit: lim, Cost: 1}, {Key: "b", Limit: lim, Cost: 1}, {Key: "c", Limit: lim, Cost: 1}}
	ctx := context.Background()
	if _, err := s.TakeAll(ctx, reqs, limiter.TakeAllOptions{}); err != nil { // loads the script
		t.Fatal(err)
	}
	calls.Store(0)
	res, err := s.TakeAll(ctx, reqs, limiter.TakeAllOptions{})
	if err != nil || !res.Allowed {
		t.Fatalf("TakeAll = %+v, %v", res, err)
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("three limits on one node: %d commands, want 1", got)
	}
}

// TestHashSlotsShareTag checks the hash tag rule documented for several
// limits on a Cluster: keys starting with the same "{tag}" share a slot.
func TestHashSlotsShareTag(t *testing.T) {
	s := redisstore.New(redistest.Start(t).Client())
	a, b := s.Key("{org-42}user-1"), s.Key("{org-42}org")
	if redistest.Slot(a) != redistest.Slot(b) {
		t.Errorf("slots of %q and %q differ", a, b)
	}
}

type countHook struct{ n *atomic.Int64 }

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}
