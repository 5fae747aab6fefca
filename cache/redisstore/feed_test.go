package redisstore_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/topdeck/resilience/cache"
	"github.com/topdeck/resilience/cache/redisstore"
	"github.com/topdeck/resilience/internal/redistest"
)

// follow runs s.Follow until the test ends and returns its invalidations
// and its result.
func follow(t *testing.T, s *redisstore.Store) (<-chan cache.Invalidation, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	invs := make(chan cache.Invalidation, 100)
	res := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		res <- s.Follow(ctx, func(inv cache.Invalidation) {
			select {
			case invs <- inv:
			default:
				t.Errorf("test buffer full")
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("Follow did not return within 10s of its ctx ending")
		}
	})
	return invs, res
}

func nextInv(t *testing.T, ch <-chan cache.Invalidation) cache.Invalidation {
	t.Helper()
	select {
	case inv := <-ch:
		return inv
	case <-time.After(10 * time.Second):
		t.Fatalf("no invalidation within 10s")
	}
	return cache.Invalidation{}
}

func testFeed(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	prefix := newPrefixer()()
	follower := redisstore.New(client, redisstore.WithPrefix(prefix))
	writer := redisstore.New(client, redisstore.WithPrefix(prefix))    // another replica
	other := redisstore.New(client, redisstore.WithPrefix(prefix+"o")) // another tenant
	invs, _ := follow(t, follower)
	if inv := nextInv(t, invs); inv.Kind != cache.InvalidateAll {
		t.Fatalf("first invalidation: got %+v, want InvalidateAll", inv)
	}
	if err := other.Set(ctx, "k", []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	keys := []string{"a", "", "ключ", string([]byte{0, 0xff, ':'})}
	if err := writer.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Delete(ctx, keys...); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.DeletePattern(ctx, "p[0-9]*"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []cache.Invalidation{
		{Kind: cache.InvalidateSet, Keys: []string{"k"}},
		{Kind: cache.InvalidateDelete, Keys: keys},
		{Kind: cache.InvalidatePattern, Pattern: "p[0-9]*"},
	} {
		got := nextInv(t, invs)
		if got.Kind != want.Kind || got.Pattern != want.Pattern || !slices.Equal(got.Keys, want.Keys) {
			t.Errorf("invalidation: got %+v, want %+v", got, want)
		}
	}
	// Set still stores what it stored before.
	e, found, err := follower.Get(ctx, "k")
	if err != nil || !found || string(e.Value) != "v" || e.TTL <= 0 || e.TTL > time.Minute {
		t.Errorf("Get after Set: got %+v, %v, %v", e, found, err)
	}
	select {
	case inv := <-invs:
		t.Errorf("unexpected invalidation (another prefix's?): %+v", inv)
	default:
	}
}

func TestFeed(t *testing.T) { testFeed(t, redistest.Start(t).Client()) }

func TestFeedCluster(t *testing.T) { testFeed(t, startCluster(t)) }

// A Follow whose Redis goes away returns ErrFeedDown (the heartbeat or the
// connection says so), and a new Follow works once Redis is back.
func TestFeedBreaksWhenRedisDies(t *testing.T) {
	for _, tt := range []struct {
		name string
		kill func(*redistest.Server) (restore func())
	}{
		{"killed", func(s *redistest.Server) func() { s.Kill(); return s.Restart }},
		{"hung", func(s *redistest.Server) func() { s.Freeze(); return s.Thaw }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.Start(t)
			s := redisstore.New(srv.Client())
			invs, res := follow(t, s)
			if inv := nextInv(t, invs); inv.Kind != cache.InvalidateAll {
				t.Fatalf("first invalidation: got %+v", inv)
			}
			restore := tt.kill(srv)
			select {
			case err := <-res:
				if !errors.Is(err, cache.ErrFeedDown) {
					t.Errorf("Follow with Redis %s: got %v, want ErrFeedDown", tt.name, err)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("Follow still running 20s after Redis was %s", tt.name)
			}
			restore()
			invs, _ = follow(t, s)
			if inv := nextInv(t, invs); inv.Kind != cache.InvalidateAll {
				t.Fatalf("first invalidation after Redis came back: got %+v", inv)
			}
		})
	}
}

// The memory layer of a Cache on Redis answers from memory while it follows
// the feed, and another replica's Set reaches it through Redis.
func TestCacheMemoryLayerOnRedis(t *testing.T) {
	ctx := context.Background()
	client := redistest.Start(t).Client()
	prefix := newPrefixer()()
	a, err := cache.New(redisstore.New(client, redisstore.WithPrefix(prefix)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := cache.New(redisstore.New(client, redisstore.WithPrefix(prefix)))
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(rctx) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(10 * time.Second); !a.Following(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not following after 10s")
		}
	}
	watch, err := a.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	<-watch // InvalidateAll
	if _, err := b.Set(ctx, "k", []byte("v1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	<-watch // b's Set
	if r, _ := a.Get(ctx, "k"); string(r.Value) != "v1" {
		t.Fatalf("Get: got %+v, want v1", r)
	}
	// Gets from memory: no command reaches Redis.
	before := commandsProcessed(t, client)
	for range 10 {
		if r, _ := a.Get(ctx, "k"); string(r.Value) != "v1" {
			t.Fatalf("Get: got %+v, want v1", r)
		}
	}
	if n := commandsProcessed(t, client) - before; n > 3 { // INFO itself, heartbeats
		t.Errorf("10 Gets from memory: Redis processed %d commands, want at most 3", n)
	}
	if _, err := b.Set(ctx, "k", []byte("v2"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if inv := <-watch; inv.Kind != cache.InvalidateSet {
		t.Fatalf("invalidation of b's Set: got %+v", inv)
	}
	// The invalidation reached a's memory before its watchers.
	if r, _ := a.Get(ctx, "k"); string(r.Value) != "v2" {
		t.Errorf("Get after the invalidation arrived: got %q, want v2", r.Value)
	}
}

func commandsProcessed(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	info, err := c.InfoMap(context.Background(), "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, section := range info {
		if v, ok := section["total_commands_processed"]; ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("INFO stats has no total_commands_processed")
	return 0
}
