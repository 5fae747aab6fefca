package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/topdeck/resilience/breaker"
)

// Default values of the options.
const (
	DefaultPrefix  = "resilience:"
	DefaultIdleTTL = breaker.DefaultIdleTTL
)

// Store is a breaker.Store in Redis. Create it with New; the zero value is not
// usable. It is safe for concurrent use. New starts no goroutine. The first
// Watch subscribes to the events channel and starts one goroutine, owned by
// the Store, that reads the subscription and fans its events out to every
// watcher through a breaker.Hub until Close: any number of watchers cost one
// Redis connection.
type Store struct {
	client  redis.UniversalClient
	prefix  string
	idleTTL time.Duration
	now     func() time.Time // nil: Redis TIME (production)
	// maxNames bounds seen (WithMaxRegisteredNames).
	maxNames int

	// seen remembers the names this Store registered recently (see
	// register), in bounded memory.
	seen *registered

	hub      *breaker.Hub
	lastBeat atomic.Int64 // Unix ns when the subscription last heard its heartbeat

	mu         sync.Mutex // protects the fields below
	closed     bool
	subscribed bool               // the subscription goroutine runs
	cancel     context.CancelFunc // ends the subscription goroutine
	wg         sync.WaitGroup     // the subscription goroutine
}

var _ breaker.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithPrefix sets the prefix of every key and of the events channel (default
// "resilience:").
func WithPrefix(p string) Option { return func(s *Store) { s.prefix = p } }

// WithIdleTTL sets how long a breaker's keys live after its last write,
// on top of RecoveryTimeout + ProbeTimeout (+ Window in failure-rate mode),
// default 24h.
func WithIdleTTL(d time.Duration) Option { return func(s *Store) { s.idleTTL = d } }

// WithMaxRegisteredNames bounds how many names the Store remembers having
// registered in the registry (default DefaultMaxRegisteredNames, about 20
// bytes each). Beyond it, a name in use is registered again (two idempotent
// commands) more often than once per refresh period; nothing else changes.
func WithMaxRegisteredNames(n int) Option { return func(s *Store) { s.maxNames = n } }

// WithClockForTesting makes the scripts use now() (passed in ARGV) instead of
// redis.call("TIME").
//
// FOR TESTS ONLY. In production the Redis server must be the only clock: with
// this option each replica's clock decides, and replicas whose clocks differ
// disagree about when a breaker may probe.
func WithClockForTesting(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// New returns a Store on client (a *redis.Client, *redis.ClusterClient,
// *redis.Ring or failover client; the caller owns and closes it).
func New(client redis.UniversalClient, opts ...Option) *Store {
	s := &Store{client: client, prefix: DefaultPrefix, idleTTL: DefaultIdleTTL, hub: breaker.NewHub(breaker.DefaultWatchBuffer), maxNames: DefaultMaxRegisteredNames}
	for _, o := range opts {
		o(s)
	}
	s.seen = newRegistered(s.maxNames)
	return s
}

// keyBase is the start of every key of name: <prefix>br:{<name>}:
func (s *Store) keyBase(name string) string { return s.prefix + "br:{" + name + "}:" }

// keys returns the state, probes and window keys of name.
func (s *Store) keys(name string) []string {
	base := s.keyBase(name)
	return []string{base + "s", base + "p", base + "w"}
}

func (s *Store) registryKey() string { return s.prefix + "breakers" }

// markerKey is the key whose presence says that a Store registered name
// within the last IdleTTL (see register).
func (s *Store) markerKey(name string) string { return s.keyBase(name) + "r" }

// pruneLockKey is held by the replica that prunes the registry (see Prune).
func (s *Store) pruneLockKey() string { return s.prefix + "breakers:prune-lock" }

// refreshEvery is how often a Store registers a name it keeps using again:
// a quarter of the idle TTL, at most 6h (at least 1ms).
func (s *Store) refreshEvery() time.Duration {
	return max(min(s.idleTTL/4, 6*time.Hour), time.Millisecond)
}

// clock is the local clock of the registration bookkeeping (and the test
// clock under WithClockForTesting); no decision depends on it.
func (s *Store) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// Channel is the pub/sub channel of transitions: <prefix>breaker-events.
func (s *Store) Channel() string { return s.prefix + "breaker-events" }

func (s *Store) nowArg() string {
	if s.now == nil {
		return ""
	}
	return strconv.FormatInt(s.now().UnixMicro(), 10)
}

// commonArgs returns ARGV[1..5] of lib.lua.
func (s *Store) commonArgs(name string, st breaker.Settings) []any {
	ttl := st.KeepFor(s.idleTTL)
	return []any{s.nowArg(), encodeSettings(st), ttl.Milliseconds(), name, s.Channel()}
}

// fail wraps a Redis error. It forgets the registered names, so that they are
// registered again once Redis is back (it may have lost its data).
func (s *Store) fail(op, name string, err error) error {
	if !errors.Is(err, errReply) {
		s.seen.clear()
	}
	return fmt.Errorf("%w: %s %q: %w", breaker.ErrStoreUnavailable, op, name, err)
}
