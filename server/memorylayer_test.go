package server

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/topdeck/resilience/config"
	"github.com/topdeck/resilience/internal/redistest"
)

// TestMemoryLayerConfig: cache.memory_layer.enabled false makes every Get
// read Redis, so a write made around the service (no invalidation) is seen
// at once; with the layer on (the default) the replica answers from memory.
func TestMemoryLayerConfig(t *testing.T) {
	rdb := redistest.Start(t).Client()
	for _, tt := range []struct {
		name, yaml string
		fromRedis  bool
	}{
		{"off", "cache:\n  memory_layer:\n    enabled: false\n", true},
		{"on, sized", "cache:\n  memory_layer:\n    max_entries: 10\n    max_bytes: 100000\n", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse("t.yaml", []byte("redis_key_prefix: \"ml-"+tt.name[:2]+":\"\n"+tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			b, err := NewBackends(cfg, redisStores(cfg, rdb), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rctx, stop := context.WithCancel(ctx)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); b.Run(rctx) }()
			defer func() { stop(); wg.Wait(); _ = b.Close() }()
			if !tt.fromRedis {
				for i := 0; i < 500 && !b.Cache.Following(); i++ {
					time.Sleep(10 * time.Millisecond)
				}
			}
			// Both writes go around the service, so no invalidation of
			// the service's own Set can race with the memory layer's fill.
			if err := rdb.Set(ctx, cfg.RedisKeyPrefix+"cache:k", "v1", time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			if g, err := b.Cache.Get(ctx, "k"); err != nil || string(g.Value) != "v1" {
				t.Fatalf("Get: got %+v, %v; want v1", g, err)
			}
			// A write around the service: no invalidation is published.
			if err := rdb.Set(ctx, cfg.RedisKeyPrefix+"cache:k", "v2", time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			g, err := b.Cache.Get(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
			if got := string(g.Value) == "v2"; got != tt.fromRedis {
				t.Errorf("Get after a write around the service: got %q; want it read from Redis: %v", g.Value, tt.fromRedis)
			}
		})
	}
}
