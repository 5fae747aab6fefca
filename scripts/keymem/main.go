// Command keymem measures the Redis memory that limiter buckets and breakers
// take: it creates N of each through the real Redis stores, on a Redis of
// your choice (loopback only), and reports used_memory per key.
//
//	go run ./scripts/keymem --redis-url redis://127.0.0.1:6390 --n 1000000
//
// The Redis must be empty and disposable: keymem flushes it first.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/topdeck/resilience/breaker"
	breakerredis "github.com/topdeck/resilience/breaker/redisstore"
	"github.com/topdeck/resilience/limiter"
	limiterredis "github.com/topdeck/resilience/limiter/redisstore"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "keymem:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("keymem", flag.ContinueOnError)
	url := fs.String("redis-url", "redis://127.0.0.1:6390", "a disposable, loopback Redis (it is flushed)")
	n := fs.Int("n", 1_000_000, "limiter keys and breakers to create")
	workers := fs.Int("workers", 64, "concurrent callers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opt, err := redis.ParseURL(*url)
	if err != nil {
		return err
	}
	if host, _, _ := net.SplitHostPort(opt.Addr); host != "127.0.0.1" && host != "::1" && host != "localhost" {
		return errors.New("--redis-url must be a loopback address")
	}
	opt.PoolSize = *workers
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		return err
	}

	lim := limiterredis.New(rdb)
	// A limit whose buckets stay non-full (and so stored) for a day.
	l := limiter.Limit{MaxCalls: 1000, Window: 24 * time.Hour}
	limKeys, err := measure(ctx, rdb, *n, *workers, func(ctx context.Context, i int) error {
		_, err := lim.Take(ctx, "azure-devops/org-"+strconv.Itoa(i), l, 1, 0)
		return err
	})
	if err != nil {
		return err
	}
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		return err
	}

	br := breakerredis.New(rdb)
	defer br.Close()
	s := breaker.Settings{}
	brKeys, err := measure(ctx, rdb, *n, *workers, func(ctx context.Context, i int) error {
		// One failure gives the breaker stored state (a count), as a
		// breaker in use has; the registry entry comes with the first call.
		_, err := br.Report(ctx, "upstream/"+strconv.Itoa(i), s, breaker.OutcomeFailure, 0, "")
		return err
	})
	if err != nil {
		return err
	}
	fmt.Printf("redis %s, n=%d\n", redisVersion(ctx, rdb), *n)
	fmt.Printf("limiter bucket: %.0f bytes of used_memory each (%d keys)\n", limKeys.perItem, limKeys.keys)
	fmt.Printf("breaker (state + marker + registry entry): %.0f bytes of used_memory each (%d keys)\n", brKeys.perItem, brKeys.keys)
	return nil
}

type result struct {
	perItem float64
	keys    int64
}

// measure runs fn for 0..n-1 on workers goroutines and returns the growth of
// used_memory per item.
func measure(ctx context.Context, rdb *redis.Client, n, workers int, fn func(context.Context, int) error) (result, error) {
	before, err := usedMemory(ctx, rdb)
	if err != nil {
		return result{}, err
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		ferr error
	)
	next := make(chan int, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(ctx, i); err != nil {
					mu.Lock()
					ferr = err
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if ferr != nil {
		return result{}, ferr
	}
	after, err := usedMemory(ctx, rdb)
	if err != nil {
		return result{}, err
	}
	keys, err := rdb.DBSize(ctx).Result()
	if err != nil {
		return result{}, err
	}
	return result{perItem: float64(after-before) / float64(n), keys: keys}, nil
}

func usedMemory(ctx context.Context, rdb *redis.Client) (int64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("no used_memory in INFO")
}

func redisVersion(ctx context.Context, rdb *redis.Client) string {
	info, _ := rdb.Info(ctx, "server").Result()
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "redis_version:"); ok {
			return v
		}
	}
	return "?"
}
