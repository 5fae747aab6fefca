package redisstore

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/topdeck/resilience/cache"
)

// DefaultPrefix is the key prefix unless WithPrefix says otherwise.
const DefaultPrefix = "resilience:"

const (
	scanCount   = 500             // COUNT of each SCAN, and keys per UNLINK batch
	seqKeepTime = time.Hour       // how long the last applied stats batch is remembered
	statsTag    = "{cache-stats}" // hash tag shared by the stats keys
)

var (
	//go:embed addstats.lua
	addStatsLua    string
	addStatsScript = redis.NewScript(addStatsLua)

	//go:embed set.lua
	setLua    string
	setScript = redis.NewScript(setLua)
)

// statsFields are the fields of the stats hash, in Counters order.
var statsFields = []string{"hits", "misses", "sets", "deletes", "errors"}

// Store is a cache.Store and cache.StatsStore over Redis (single node,
// Sentinel, Ring or Cluster). Create it with New; the zero value is not
// usable. A Store is safe for concurrent use; the caller owns the client.
type Store struct {
	client redis.UniversalClient
	prefix string
	keyPfx string // <prefix>cache:
}

var (
	_ cache.Store      = (*Store)(nil)
	_ cache.StatsStore = (*Store)(nil)
	_ cache.Feed       = (*Store)(nil)
)

// Option configures a Store.
type Option func(*Store)

// WithPrefix sets the prefix of every key (default DefaultPrefix).
func WithPrefix(p string) Option { return func(s *Store) { s.prefix = p } }

// New returns a Store using client. It sends nothing to Redis.
func New(client redis.UniversalClient, opts ...Option) *Store {
	s := &Store{client: client, prefix: DefaultPrefix}
	for _, o := range opts {
		o(s)
	}
	s.keyPfx = s.prefix + "cache:"
	return s
}

// Key returns the Redis key of the cache key k.
func (s *Store) Key(k string) string { return s.keyPfx + k }

// Get reads the value and its PTTL in one round trip: GET and PTTL in one
// pipeline. Redis runs a connection's commands in order, but another client's
// command may come between the two: a key deleted or expired in between is a
// miss; one overwritten in between gets the new value's TTL (the new TTL is
// never longer than what a Set asked for, so nothing outlives its TTL).
func (s *Store) Get(ctx context.Context, key string) (cache.Entry, bool, error) {
	k := s.Key(key)
	var (
		get  *redis.StringCmd
		pttl *redis.DurationCmd
	)
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, k)
		pttl = p.PTTL(ctx, k)
		return nil
	})
	if errors.Is(err, redis.Nil) && get.Err() == redis.Nil {
		return cache.Entry{}, false, nil
	}
	if err != nil {
		return cache.Entry{}, false, fmt.Errorf("redisstore: get: %w", err)
	}
	v, err := get.Bytes()
	if err != nil {
		return cache.Entry{}, false, fmt.Errorf("redisstore: get: %w", err)
	}
	var ttl time.Duration
	switch d := pttl.Val(); {
	case d == -2, d == 0:
		// Gone since the GET, or in its last millisecond (PTTL rounds
		// down): a miss. A TTL of 0 would mean "no expiry" and let a memory
		// layer or an SDK's near cache keep the value after Redis dropped it.
		return cache.Entry{}, false, nil
	case d > 0:
		ttl = d
	}
	return cache.Entry{Value: v, TTL: ttl}, true, nil
}

// Set stores value with SET PX (ttl rounded up to a millisecond; ttl <= 0
// stores it without expiry) and publishes its invalidation on Channel, both
// in set.lua: on the key's node, the announcement comes after the write.
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	var ms int64
	if ttl > 0 {
		ms = (ttl + time.Millisecond - 1).Milliseconds()
	}
	msg := encodeInvalidation(cache.Invalidation{Kind: cache.InvalidateSet, Keys: []string{key}})
	if err := setScript.Run(ctx, s.client, []string{s.Key(key)}, value, ms, s.Channel(), msg).Err(); err != nil {
		return fmt.Errorf("redisstore: set: %w", err)
	}
	return nil
}

// Delete removes keys with UNLINK: in batches on one node, one key per
// command (pipelined) on Cluster and Ring, where keys span nodes and slots;
// then it publishes their invalidation on Channel.
func (s *Store) Delete(ctx context.Context, keys ...string) (int64, error) {
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = s.Key(k)
	}
	n, err := unlink(ctx, s.client, full, s.sharded())
	// Announced after the UNLINK replies (also after a failure: some keys
	// may be gone), so a subscriber that reads a key again reads it gone.
	perr := s.publish(ctx, cache.Invalidation{Kind: cache.InvalidateDelete, Keys: keys})
	if err = errors.Join(err, perr); err != nil {
		return n, fmt.Errorf("redisstore: delete: %w", err)
	}
	return n, nil
}

// DeletePattern SCANs "<escaped prefix>cache:<pattern>" (COUNT 500) on
// every master (every shard of a Ring) and UNLINKs what it finds, batch by
// batch, then publishes the pattern's invalidation on Channel. It never uses
// KEYS. It returns the keys removed so far with any error.
func (s *Store) DeletePattern(ctx context.Context, pattern string) (int64, error) {
	match := escapeGlob(s.keyPfx) + pattern
	var total atomic.Int64
	err := s.forEachNode(ctx, func(ctx context.Context, node redis.UniversalClient) error {
		return scan(ctx, node, match, func(keys []string) error {
			n, err := unlink(ctx, node, keys, s.sharded())
			total.Add(n)
			return err
		})
	})
	perr := s.publish(ctx, cache.Invalidation{Kind: cache.InvalidatePattern, Pattern: pattern})
	if err = errors.Join(err, perr); err != nil {
		return total.Load(), fmt.Errorf("redisstore: delete pattern: %w", err)
	}
	return total.Load(), nil
}

// Len counts the cache keys with SCAN on every master, without duplicates.
func (s *Store) Len(ctx context.Context) (int64, error) {
	match := escapeGlob(s.keyPfx) + "*"
	var total atomic.Int64
	err := s.forEachNode(ctx, func(ctx context.Context, node redis.UniversalClient) error {
		seen := make(map[string]struct{})
		err := scan(ctx, node, match, func(keys []string) error {
			for _, k := range keys {
				seen[k] = struct{}{}
			}
			return nil
		})
		total.Add(int64(len(seen)))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("redisstore: len: %w", err)
	}
	return total.Load(), nil
}

// AddStats adds one batch to the stats hash with addstats.lua, at most once
// per (Source, Seq).
func (s *Store) AddStats(ctx context.Context, d cache.StatsDelta) error {
	vals := []int64{d.Hits, d.Misses, d.Sets, d.Deletes, d.Errors}
	args := make([]any, 0, 2+2*len(vals))
	args = append(args, strconv.FormatUint(d.Seq, 10), seqKeepTime.Milliseconds())
	for i, v := range vals {
		if v != 0 {
			args = append(args, statsFields[i], v)
		}
	}
	keys := []string{s.statsKey(), s.statsKey() + ":seq:" + d.Source}
	reply, err := addStatsScript.Run(ctx, s.client, keys, args...).Result()
	if err != nil {
		return fmt.Errorf("redisstore: add stats: %w", err)
	}
	if n, ok := reply.(int64); !ok || (n != 0 && n != 1) {
		return fmt.Errorf("redisstore: add stats: unexpected reply %T %v, want 0 or 1", reply, reply)
	}
	return nil
}

// LoadStats reads the stats hash (HMGET); missing fields count zero.
func (s *Store) LoadStats(ctx context.Context) (cache.Counters, error) {
	vals, err := s.client.HMGet(ctx, s.statsKey(), statsFields...).Result()
	if err != nil {
		return cache.Counters{}, fmt.Errorf("redisstore: load stats: %w", err)
	}
	if len(vals) != len(statsFields) {
		return cache.Counters{}, fmt.Errorf("redisstore: load stats: got %d fields, want %d", len(vals), len(statsFields))
	}
	var n [5]int64
	for i, v := range vals {
		switch v := v.(type) {
		case nil:
		case string:
			if n[i], err = strconv.ParseInt(v, 10, 64); err != nil {
				return cache.Counters{}, fmt.Errorf("redisstore: load stats: field %s: %w", statsFields[i], err)
			}
		default:
			return cache.Counters{}, fmt.Errorf("redisstore: load stats: field %s has type %T, want string", statsFields[i], v)
		}
	}
	return cache.Counters{Hits: n[0], Misses: n[1], Sets: n[2], Deletes: n[3], Errors: n[4]}, nil
}

func (s *Store) statsKey() string { return s.prefix + statsTag }

// sharded reports whether keys of one command may live on different nodes
// or slots, so multi-key UNLINK is not allowed.
func (s *Store) sharded() bool {
	switch s.client.(type) {
	case *redis.ClusterClient, *redis.Ring:
		return true
	}
	return false
}

// forEachNode runs fn on every master of a Cluster, every shard of a Ring,
// or the one server otherwise. Cluster and Ring run fn concurrently.
func (s *Store) forEachNode(ctx context.Context, fn func(context.Context, redis.UniversalClient) error) error {
	switch c := s.client.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { return fn(ctx, node) })
	case *redis.Ring:
		return c.ForEachShard(ctx, func(ctx context.Context, node *redis.Client) error { return fn(ctx, node) })
	}
	return fn(ctx, s.client)
}

// scan walks SCAN cursor MATCH match COUNT 500 on one node and hands each
// non-empty batch of keys to fn.
func scan(ctx context.Context, node redis.UniversalClient, match string, fn func([]string) error) error {
	var cursor uint64
	for {
		keys, next, err := node.Scan(ctx, cursor, match, scanCount).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := fn(keys); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// unlink removes keys with UNLINK: multi-key batches of scanCount on one
// node, or one key per command in a pipeline when sharded.
func unlink(ctx context.Context, c redis.Cmdable, keys []string, sharded bool) (int64, error) {
	var total int64
	for len(keys) > 0 {
		batch := keys[:min(len(keys), scanCount)]
		keys = keys[len(batch):]
		if !sharded {
			n, err := c.Unlink(ctx, batch...).Result()
			total += n
			if err != nil {
				return total, err
			}
			continue
		}
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range batch {
				p.Unlink(ctx, k)
			}
			return nil
		})
		for _, cmd := range cmds {
			if ic, ok := cmd.(*redis.IntCmd); ok && ic.Err() == nil {
				total += ic.Val()
			}
		}
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// globEscaper escapes the bytes special to Redis MATCH.
var globEscaper = strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)

// escapeGlob returns a pattern that matches s literally.
func escapeGlob(s string) string { return globEscaper.Replace(s) }
