package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
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
	// subscribeTimeout bounds the wait for Redis to confirm a Watch subscription.
	subscribeTimeout = 3 * time.Second
	// heartbeatEvery is how often a Watch publishes a heartbeat on its own
	// channel through the client (so to the current master);
	// heartbeatTimeout is how long it goes without receiving one before it
	// subscribes again on a new connection.
	heartbeatEvery   = time.Second
	heartbeatTimeout = 3 * time.Second
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

// register puts name in the registry (for List) and sets its marker key to
// expire after IdleTTL + refreshEvery. A Store does it the first time it
// sees a name and again each refreshEvery while it keeps using it, so the
// marker outlives the last use by at least IdleTTL; Prune drops the names
// whose marker and state have both expired. The marker is written first, and
// the registry entry only once Redis has confirmed it (two round trips, not a
// pipeline, which Cluster may run on two nodes in either order): Prune relies
// on that order.
func (s *Store) register(ctx context.Context, name string) error {
	now := s.clock().UnixNano()
	every := int64(s.refreshEvery())
	if s.seen.recent(name, now, every) {
		return nil
	}
	if err := s.client.Set(ctx, s.markerKey(name), "1", s.idleTTL+time.Duration(every)).Err(); err != nil {
		return err
	}
	if err := s.client.ZAddNX(ctx, s.registryKey(), redis.Z{Member: name}).Err(); err != nil {
		return err
	}
	s.seen.add(name, now, every)
	return nil
}

// prunePage is how many registry names Prune checks per round trip.
const prunePage = 500

// Prune removes from the registry the names of breakers that are gone: no
// state key (it expired IdleTTL after the breaker's last write, or it never
// had one) and no marker (no Store registered the name within IdleTTL). It
// walks the whole registry, prunePage names per round trip, and returns how
// many names it removed.
//
// With every > 0 it first takes a lock for that long, so that of all the
// replicas calling it on a schedule one prunes per period; when another
// holds the lock it returns (0, false, nil). ran reports whether it walked
// the registry.
//
// A name registered while Prune runs is never lost: Prune removes the names
// it found gone, checks them again and puts back those that came back in
// between (register writes the marker before the registry entry).
func (s *Store) Prune(ctx context.Context, every time.Duration) (removed int, ran bool, err error) {
	if every > 0 {
		ok, err := s.client.SetNX(ctx, s.pruneLockKey(), "1", every).Result()
		if err != nil {
			return 0, false, s.fail("prune", "", err)
		}
		if !ok {
			return 0, false, nil
		}
	}
	lo := "-"
	for {
		names, err := s.client.ZRangeByLex(ctx, s.registryKey(), &redis.ZRangeBy{Min: lo, Max: "+", Count: prunePage}).Result()
		if err != nil {
			return removed, true, s.fail("prune", "", err)
		}
		if len(names) == 0 {
			return removed, true, nil
		}
		n, err := s.prunePage(ctx, names)
		removed += n
		if err != nil {
			return removed, true, s.fail("prune", "", err)
		}
		if len(names) < prunePage {
			return removed, true, nil
		}
		lo = "(" + names[len(names)-1]
	}
}

// prunePage removes the gone names among names and returns how many.
func (s *Store) prunePage(ctx context.Context, names []string) (int, error) {
	gone, err := s.gone(ctx, names)
	if err != nil || len(gone) == 0 {
		return 0, err
	}
	members := make([]any, len(gone))
	for i, n := range gone {
		members[i] = n
	}
	if err := s.client.ZRem(ctx, s.registryKey(), members...).Err(); err != nil {
		return 0, err
	}
	still, err := s.gone(ctx, gone)
	if err != nil {
		return 0, err
	}
	if back := len(gone) - len(still); back > 0 {
		isGone := make(map[string]bool, len(still))
		for _, n := range still {
			isGone[n] = true
		}
		zs := make([]redis.Z, 0, back)
		for _, n := range gone {
			if !isGone[n] {
				zs = append(zs, redis.Z{Member: n})
			}
		}
		if err := s.client.ZAddNX(ctx, s.registryKey(), zs...).Err(); err != nil {
			return 0, err
		}
	}
	return len(still), nil
}

// gone returns the names among names that have neither a state key nor a
// marker, with one EXISTS per name (both keys share the name's hash tag) in
// one pipeline.
func (s *Store) gone(ctx context.Context, names []string) ([]string, error) {
	cmds := make([]*redis.IntCmd, len(names))
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, n := range names {
			base := s.keyBase(n)
			cmds[i] = p.Exists(ctx, base+"s", base+"r")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for i, c := range cmds {
		if c.Val() == 0 {
			out = append(out, names[i])
		}
	}
	return out, nil
}

// Allow implements breaker.Store.
func (s *Store) Allow(ctx context.Context, name string, st breaker.Settings) (breaker.Admission, error) {
	st, err := breaker.Prepare(name, st)
	if err != nil {
		return breaker.Admission{}, err
	}
	if err := s.register(ctx, name); err != nil {
		return breaker.Admission{}, s.fail("allow", name, err)
	}
	v, err := allowScript.Run(ctx, s.client, s.keys(name), s.commonArgs(name, st)...).Result()
	if err != nil {
		return breaker.Admission{}, s.fail("allow", name, err)
	}
	adm, err := decodeAdmission(v)
	if err != nil {
		return breaker.Admission{}, s.fail("allow", name, err)
	}
	return adm, nil
}

// Report implements breaker.Store.
func (s *Store) Report(ctx context.Context, name string, st breaker.Settings, o breaker.Outcome, generation uint64, permitID string) (breaker.ReportResult, error) {
	st, err := breaker.Prepare(name, st)
	if err != nil {
		return breaker.ReportResult{}, err
	}
	if !o.Valid() {
		return breaker.ReportResult{}, fmt.Errorf("%w: %d", breaker.ErrInvalidOutcome, o)
	}
	if err := s.register(ctx, name); err != nil {
		return breaker.ReportResult{}, s.fail("report", name, err)
	}
	if _, _, ok := breaker.ParsePermitID(permitID); permitID != "" && !ok {
		permitID = "!" // malformed: report.lua ignores it (no_permit)
	}
	args := append(s.commonArgs(name, st), int(o), strconv.FormatUint(generation, 10), permitID)
	v, err := reportScript.Run(ctx, s.client, s.keys(name), args...).Result()
	if err != nil {
		return breaker.ReportResult{}, s.fail("report", name, err)
	}
	res, err := decodeReport(v)
	if err != nil {
		return breaker.ReportResult{}, s.fail("report", name, err)
	}
	return res, nil
}

// Status implements breaker.Store. It writes nothing.
func (s *Store) Status(ctx context.Context, name string, st breaker.Settings) (breaker.Status, error) {
	st, err := breaker.Prepare(name, st)
	if err != nil {
		return breaker.Status{}, err
	}
	v, err := statusScript.Run(ctx, s.client, s.keys(name), s.commonArgs(name, st)...).Result()
	if err != nil {
		return breaker.Status{}, s.fail("status", name, err)
	}
	out, _, err := decodeStatus(name, v)
	if err != nil {
		return breaker.Status{}, s.fail("status", name, err)
	}
	out.Settings = st
	return out, nil
}

// Reset implements breaker.Store.
func (s *Store) Reset(ctx context.Context, name string, st breaker.Settings, to breaker.State) (breaker.Status, error) {
	st, err := breaker.Prepare(name, st)
	if err != nil {
		return breaker.Status{}, err
	}
	if to != breaker.StateClosed && to != breaker.StateOpen {
		return breaker.Status{}, fmt.Errorf("%w: reset to %s: only CLOSED or OPEN", breaker.ErrInvalidState, to)
	}
	if err := s.register(ctx, name); err != nil {
		return breaker.Status{}, s.fail("reset", name, err)
	}
	args := append(s.commonArgs(name, st), int(to))
	v, err := resetScript.Run(ctx, s.client, s.keys(name), args...).Result()
	if err != nil {
		return breaker.Status{}, s.fail("reset", name, err)
	}
	out, _, err := decodeStatus(name, v)
	if err != nil {
		return breaker.Status{}, s.fail("reset", name, err)
	}
	out.Settings = st
	return out, nil
}

// Release implements breaker.Store: one ZREM of the permit.
func (s *Store) Release(ctx context.Context, name string, permitID string) error {
	if err := breaker.ValidateName(name); err != nil {
		return err
	}
	if permitID == "" {
		return nil
	}
	if err := s.client.ZRem(ctx, s.keys(name)[1], permitID).Err(); err != nil {
		return s.fail("release", name, err)
	}
	return nil
}

// prefixEnd returns the exclusive ZRANGEBYLEX upper bound of names starting
// with prefix ("+" when every name does).
func prefixEnd(prefix string) string {
	b := []byte(prefix)
	for len(b) > 0 && b[len(b)-1] == 0xff {
		b = b[:len(b)-1]
	}
	if len(b) == 0 {
		return "+"
	}
	b[len(b)-1]++
	return "(" + string(b)
}

// List implements breaker.Store: ZRANGEBYLEX on the registry, then one
// pipelined status.lua per name with the settings stored in each breaker.
func (s *Store) List(ctx context.Context, prefix string, pageSize int, pageToken string) ([]breaker.Status, string, error) {
	size, err := breaker.NormalizePageSize(pageSize)
	if err != nil {
		return nil, "", err
	}
	after, err := breaker.DecodePageToken(pageToken)
	if err != nil {
		return nil, "", err
	}
	lo := "-"
	if prefix != "" {
		lo = "[" + prefix
	}
	if pageToken != "" && after >= prefix {
		lo = "(" + after
	}
	names, err := s.client.ZRangeByLex(ctx, s.registryKey(), &redis.ZRangeBy{
		Min: lo, Max: prefixEnd(prefix), Count: int64(size + 1),
	}).Result()
	if err != nil {
		return nil, "", s.fail("list", prefix, err)
	}
	next := ""
	if len(names) > size {
		names = names[:size]
		next = breaker.EncodePageToken(names[size-1])
	}
	if len(names) == 0 {
		return nil, next, nil
	}
	out, err := s.statuses(ctx, names, false)
	if err != nil && isNoScript(err) {
		out, err = s.statuses(ctx, names, true)
	}
	if err != nil {
		return nil, "", s.fail("list", prefix, err)
	}
	return out, next, nil
}

func isNoScript(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") }

// statuses runs status.lua for names in one pipeline (EVALSHA, or EVAL when
// full is set).
func (s *Store) statuses(ctx context.Context, names []string, full bool) ([]breaker.Status, error) {
	pipe := s.client.Pipeline()
	cmds := make([]*redis.Cmd, len(names))
	for i, n := range names {
		args := []any{s.nowArg(), "", 0, n, s.Channel()}
		if full {
			cmds[i] = statusScript.Eval(ctx, pipe, s.keys(n), args...)
		} else {
			cmds[i] = statusScript.EvalSha(ctx, pipe, s.keys(n), args...)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	out := make([]breaker.Status, len(names))
	for i, c := range cmds {
		st, cfg, err := decodeStatus(names[i], c.Val())
		if err != nil {
			return nil, err
		}
		if st.Settings, err = decodeSettings(cfg); err != nil {
			return nil, err
		}
		out[i] = st
	}
	return out, nil
}

// wireEvent is the JSON published by the scripts.
type wireEvent struct {
	Name   string `json:"n"`
	From   uint8  `json:"f"`
	To     uint8  `json:"t"`
	Gen    uint64 `json:"g"`
	AtUS   int64  `json:"a"`
	Reason string `json:"r"`
}

// DecodeEvent parses one message of the events channel.
func DecodeEvent(payload string) (breaker.Event, error) {
	var w wireEvent
	if err := json.Unmarshal([]byte(payload), &w); err != nil {
		return breaker.Event{}, fmt.Errorf("%w: event %q: %v", errReply, payload, err)
	}
	from, to := breaker.State(w.From), breaker.State(w.To)
	if !from.Valid() || !to.Valid() {
		return breaker.Event{}, fmt.Errorf("%w: event %q: bad state", errReply, payload)
	}
	return breaker.Event{Name: w.Name, From: from, To: to, Generation: w.Gen, At: time.UnixMicro(w.AtUS), Reason: w.Reason}, nil
}

// errDeaf is the error of Watch while the shared subscription has not heard
// its heartbeat for heartbeatTimeout (Redis unreachable or failing over).
var errDeaf = errors.New("the events subscription has not heard Redis for 3s")

// Watch implements breaker.Store. The first Watch subscribes and returns once
// Redis has confirmed the subscription, so every transition after it is
// seen; later ones join that subscription (one Redis connection for all the
// watchers of the Store), and fail while it does not hear Redis. After a
// reconnection the channel carries an Event with breaker.ReasonResync
// (events may have been missed). A watcher that falls behind by
// breaker.DefaultWatchBuffer events is disconnected: its channel is closed.
// The channel is closed when ctx ends or on Close.
func (s *Store) Watch(ctx context.Context, prefix string) (<-chan breaker.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("%w: watch: store closed", breaker.ErrStoreUnavailable)
	}
	if !s.subscribed {
		if err := s.subscribeLocked(ctx); err != nil {
			return nil, s.fail("watch", prefix, err)
		}
	} else if time.Since(time.Unix(0, s.lastBeat.Load())) > heartbeatTimeout {
		return nil, s.fail("watch", prefix, errDeaf)
	}
	return s.hub.Watch(ctx, prefix)
}

// subscribeLocked subscribes to the events channel and to this Store's
// heartbeat channel, waits for Redis to confirm, and starts the goroutine
// that reads the subscription.
func (s *Store) subscribeLocked(ctx context.Context) error {
	hb := s.Channel() + ":hb:" + strconv.FormatUint(rand.Uint64(), 36)
	ps := s.client.Subscribe(ctx, s.Channel(), hb)
	if _, err := ps.ReceiveTimeout(ctx, subscribeTimeout); err != nil {
		_ = ps.Close()
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.subscribed, s.cancel = true, cancel
	s.lastBeat.Store(time.Now().UnixNano())
	s.wg.Add(1)
	go s.run(runCtx, ps, hb)
	return nil
}

// run publishes the events of ps into the hub until ctx ends. Every
// heartbeatEvery it publishes on hb, its own channel: when no heartbeat has
// come back for heartbeatTimeout, the subscription's connection no longer
// hears the master (after a Sentinel failover that left the old master
// running, go-redis keeps the subscription on it), so it subscribes again on
// a new connection, which reaches the current master; the new subscription
// sends a resync to every watcher.
func (s *Store) run(ctx context.Context, ps *redis.PubSub, hb string) {
	defer s.wg.Done()
	defer func() { _ = ps.Close() }()
	ch := ps.ChannelWithSubscriptions(redis.WithChannelSize(256))
	tick := time.NewTicker(heartbeatEvery)
	defer tick.Stop()
	lastTry := time.Now() // of a subscription: give each heartbeatTimeout to hear one
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if time.Since(time.Unix(0, s.lastBeat.Load())) > heartbeatTimeout && time.Since(lastTry) > heartbeatTimeout {
				_ = ps.Close()
				ps = s.client.Subscribe(ctx, s.Channel(), hb)
				ch = ps.ChannelWithSubscriptions(redis.WithChannelSize(256))
				lastTry = time.Now()
			}
			pctx, cancel := context.WithTimeout(ctx, heartbeatEvery/2)
			_ = s.client.Publish(pctx, hb, "").Err() // a failure shows as a missing heartbeat
			cancel()
		case m, ok := <-ch:
			if !ok {
				return
			}
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind == "subscribe" && m.Channel == s.Channel() {
					s.hub.Publish(breaker.Event{Reason: breaker.ReasonResync})
				}
			case *redis.Message:
				if m.Channel == hb {
					s.lastBeat.Store(time.Now().UnixNano())
					continue
				}
				if e, err := DecodeEvent(m.Payload); err == nil && e.Name != "" {
					s.hub.Publish(e)
				}
			}
		}
	}
}

// Announce implements breaker.Announcer: it delivers e to this Store's
// watchers (in this process only), as if it had come from Redis.
func (s *Store) Announce(e breaker.Event) { s.hub.Publish(e) }

// Close ends every Watch, the subscription and its goroutine, and waits for
// it. It does not close the Redis client. Decisions still work afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	if s.cancel != nil {
		s.cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.hub.Close()
	return nil
}
