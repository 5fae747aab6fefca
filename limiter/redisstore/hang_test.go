package redisstore_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/topdeck/resilience/internal/clocktest"
	"github.com/topdeck/resilience/internal/redistest"
	"github.com/topdeck/resilience/internal/storehealth"
	"github.com/topdeck/resilience/limiter"
	"github.com/topdeck/resilience/limiter/redisstore"
)

// countingStore counts the calls that reach a Store.
type countingStore struct {
	limiter.Store
	calls atomic.Int64
}

func (s *countingStore) Take(ctx context.Context, key string, lim limiter.Limit, cost int64, maxWait time.Duration) (limiter.Result, error) {
	s.calls.Add(1)
	return s.Store.Take(ctx, key, lim, cost, maxWait)
}

func (s *countingStore) Peek(ctx context.Context, key string, lim limiter.Limit, cost int64) (limiter.Result, error) {
	s.calls.Add(1)
	return s.Store.Peek(ctx, key, lim, cost)
}

// redisPID returns the process id of the server client talks to.
func redisPID(t *testing.T, client *redis.Client) int {
	t.Helper()
	info, err := client.Info(context.Background(), "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			pid, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("INFO server: process_id %q: %v", v, err)
			}
			return pid
		}
	}
	t.Fatalf("INFO server has no process_id:\n%s", info)
	return 0
}

// TestHungRedisCostsOneTimeout stops redis-server with SIGSTOP: the first
// call pays the store's timeout, later calls are answered by their policy
// without reaching the store, and once Redis runs again (SIGCONT) the next
// probe brings exact answers back.
func TestHungRedisCostsOneTimeout(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	pid := redisPID(t, client)
	store := &countingStore{Store: redisstore.New(client)}
	// The tracker's clock is manual: the retry interval passes only when
	// the test says so, however slow the machine.
	clock := clocktest.New(time.Unix(1_700_000_000, 0))
	tracker := storehealth.New(storehealth.WithClock(clock.Now))
	l := limiter.New(store, limiter.WithHealthTracker(tracker), limiter.WithDenyCacheSize(0))
	ctx := context.Background()
	lim := limiter.Limit{MaxCalls: 1000, Window: time.Second}
	allowLocal := limiter.Request{Key: "k", Limit: lim, Cost: 1}
	deny := limiter.Request{Key: "k", Limit: lim, Cost: 1, OnStoreFailure: limiter.Deny}

	if res, err := l.Acquire(ctx, deny); err != nil || res.Degraded {
		t.Fatalf("Acquire with Redis up = (%+v, %v), want an exact answer", res, err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP redis-server: %v", err)
	}
	cont := func() {
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Errorf("SIGCONT redis-server: %v", err)
		}
	}
	t.Cleanup(cont) // before the server is killed: cleanups run last first

	// The first call waits out the store's timeout.
	if res, err := l.Acquire(ctx, allowLocal); err != nil || !res.Degraded {
		t.Fatalf("first Acquire with Redis stopped = (%+v, %v), want a degraded answer", res, err)
	}
	before := store.calls.Load()
	for i := range 50 {
		res, err := l.Acquire(ctx, allowLocal)
		if err != nil || !res.Degraded {
			t.Fatalf("Acquire(AllowLocal) %d with Redis stopped = (%+v, %v), want a degraded answer", i, res, err)
		}
		if _, err := l.Acquire(ctx, deny); !errors.Is(err, limiter.ErrStoreUnavailable) {
			t.Fatalf("Acquire(Deny) %d with Redis stopped: error = %v, want ErrStoreUnavailable", i, err)
		}
	}
	if got := store.calls.Load(); got != before {
		t.Fatalf("%d calls reached the stopped Redis after the first failure, want 0", got-before)
	}

	cont()
	// Each iteration lets one probe through; a connection broken by the
	// timeout may fail one of them.
	for i := 0; ; i++ {
		if i == 20 {
			t.Fatal("no exact answer after 20 probes with Redis running again")
		}
		clock.Advance(storehealth.DefaultRetryInterval)
		res, err := l.Acquire(ctx, deny)
		if err == nil && !res.Degraded {
			break
		}
	}
	for i := range 5 {
		if res, err := l.Acquire(ctx, deny); err != nil || res.Degraded {
			t.Fatalf("Acquire %d after recovery = (%+v, %v), want an exact answer", i, res, err)
		}
	}
}
