package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/topdeck/resilience/internal/redisscript"
	"github.com/topdeck/resilience/limiter"
)

// DefaultPrefix is the default key prefix.
const DefaultPrefix = "resilience:"

// DefaultMaxBatch is the default largest number of decisions sent in one
// pipeline.
const DefaultMaxBatch = 128

// DefaultMaxInFlight is the default number of batches in flight at once.
const DefaultMaxInFlight = 4

// DefaultTimeout is the default bound on one batch's round trip.
const DefaultTimeout = 100 * time.Millisecond

// Store is a limiter.Store backed by Redis. Create one with New; the zero
// value is not usable. A Store is safe for concurrent use. It starts no
// goroutine: batches are sent by the callers themselves (see New).
type Store struct {
	client   redis.Scripter
	prefix   string
	now      func() time.Time // nil in production: Redis TIME is the clock
	batching bool
	maxBatch int
	timeout  time.Duration
	sha      string // of gcra.lua
	// maxInFlight bounds the batches in flight at once.
	maxInFlight int
	// oneCall: a batch's decisions go in one script call (of at most
	// maxPerCall decisions) rather than one each; only on a client of one
	// node, where the keys of a call need not share a hash slot.
	oneCall bool
	lines   sync.Pool // of *[]any, the command lines of a batch
	calls   sync.Pool // of *call, reused when no leader can still see them
	batcher *batcher  // nil when decisions are not batched
}

var (
	_ limiter.Store       = (*Store)(nil)
	_ limiter.Canceler    = (*Store)(nil)
	_ limiter.SelfBounded = (*Store)(nil)
)

// DecisionBound implements limiter.SelfBounded: batched decisions return
// within the store's timeout (see WithTimeout) of being asked for, the wait
// for a free pipeline included, when the client applies context deadlines to
// its connections (go-redis's ContextTimeoutEnabled, which
// internal/redisconn sets). Otherwise (decisions unbatched, or a client that
// ignores deadlines) it is 0: the store does not bound its decisions itself.
func (s *Store) DecisionBound() time.Duration {
	if s.batcher == nil || !contextDeadlines(s.client) {
		return 0
	}
	return s.timeout
}

// contextDeadlines reports whether client applies context deadlines to its
// connections' reads and writes.
func contextDeadlines(client redis.Scripter) bool {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return false
}

// Pipeliner is what a client needs, besides redis.Scripter, for the Store to
// batch decisions: *redis.Client, *redis.ClusterClient, *redis.Ring and every
// redis.UniversalClient have it.
type Pipeliner interface {
	Pipeline() redis.Pipeliner
}

// Option configures a Store.
type Option func(*Store)

// WithPrefix sets the prefix of every key (default DefaultPrefix). It must
// not contain '{' or '}'.
func WithPrefix(prefix string) Option {
	return func(s *Store) { s.prefix = prefix }
}

// WithBatching turns the batching of concurrent decisions into one pipeline
// on or off (default on). Off, every decision is its own round trip
// (EVALSHA, falling back to EVAL) under the caller's context. Batching needs
// a client that implements Pipeliner; with any other redis.Scripter the
// Store never batches.
func WithBatching(on bool) Option {
	return func(s *Store) { s.batching = on }
}

// WithMaxBatch sets the largest number of decisions sent in one pipeline
// (default DefaultMaxBatch); n < 1 means 1.
func WithMaxBatch(n int) Option {
	return func(s *Store) { s.maxBatch = max(n, 1) }
}

// WithMaxInFlight sets how many batches may be in flight at once, each on
// its own connection (default DefaultMaxInFlight); n < 1 means 1. More than
// one keeps Redis busy while a batch's round trip is under way.
func WithMaxInFlight(n int) Option {
	return func(s *Store) { s.maxInFlight = max(n, 1) }
}

// WithTimeout bounds each batched decision, from the moment it is asked for,
// the wait for a free pipeline included, by d (default DefaultTimeout): a
// batch's context has the deadline of its oldest call (asked for + d), or
// the latest deadline of the callers in the batch when all of them have one
// and it comes sooner. go-redis applies context deadlines to the connection
// only when the client's ContextTimeoutEnabled option is set; otherwise its
// ReadTimeout and WriteTimeout bound the round trip, and the Store does not
// claim the bound (see DecisionBound). A d <= 0 means DefaultTimeout.
// Unbatched decisions run under the caller's context alone.
func WithTimeout(d time.Duration) Option {
	return func(s *Store) {
		if d <= 0 {
			d = DefaultTimeout
		}
		s.timeout = d
	}
}

// WithClockForTesting makes the store send now() to the script instead of
// letting it read Redis TIME.
//
// FOR TESTS ONLY. In production the only clock is Redis TIME, which every
// replica shares; with this option each replica's own clock decides, and
// replicas whose clocks differ admit more than the limit. It exists so that
// the conformance suite can drive the Redis store with a manual clock.
func WithClockForTesting(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// New returns a Store using client, which may be a *redis.Client,
// *redis.ClusterClient, *redis.Ring or any redis.UniversalClient. The caller
// owns the client and closes it.
//
// # Batching
//
// When client implements Pipeliner (and WithBatching(false) is not given),
// concurrent decisions share round trips: a caller that finds no batch in
// flight (or fewer than WithMaxInFlight batches) sends its own decision at
// once, as the leader of a batch; callers that arrive while every slot is
// taken queue up, and when a batch ends the oldest of them leads the next,
// sending up to WithMaxBatch queued decisions in one pipeline. On a
// *redis.Client the pipeline holds one EVALSHA of gcra.lua per 128
// decisions, which it makes in order, each as if alone (a decision on a
// malformed bucket value fails alone); on any other client each decision is
// its own EVALSHA, atomic on its own key. A pipeline is not a transaction,
// and on Redis Cluster go-redis splits it per node. A lone caller pays one round trip, as without batching. If
// Redis answers NOSCRIPT (it restarted or its scripts were flushed), the
// script is loaded again (SCRIPT LOAD) and those decisions are retried once
// with EVAL.
//
// A batch runs under its own context (see WithTimeout), never cancelled by
// one caller. A caller whose context ends while it waits returns ctx.Err()
// at once, except the leader, which returns when its batch's round trip ends.
// A Take that returned ctx.Err() may or may not have taken tokens, as with
// any network call: its decision may already be on its way to Redis.
func New(client redis.Scripter, opts ...Option) *Store {
	s := &Store{
		client:      client,
		prefix:      DefaultPrefix,
		batching:    true,
		maxBatch:    DefaultMaxBatch,
		maxInFlight: DefaultMaxInFlight,
		timeout:     DefaultTimeout,
		sha:         gcraScript.Hash(),
	}
	for _, opt := range opts {
		opt(s)
	}
	s.calls.New = func() any { return s.newCall() }
	// Room for a whole default batch either way: 12 per decision sent
	// alone, 4+8n for n decisions in one call.
	s.lines.New = func() any { a := make([]any, 0, 12*DefaultMaxBatch); return &a }
	// *redis.Client is one node (or Sentinel's current master); a Cluster
	// client or a Ring spreads keys over nodes, so each decision there is
	// its own call, routed by its own key.
	_, s.oneCall = client.(*redis.Client)
	if p, ok := client.(Pipeliner); ok && s.batching {
		s.batcher = &batcher{
			exec:        func(ctx context.Context, batch []*call) { s.exec(ctx, p, batch) },
			maxBatch:    s.maxBatch,
			maxInFlight: s.maxInFlight,
			timeout:     s.timeout,
		}
	}
	return s
}

// Key returns the Redis key of key's bucket: <prefix>rl:{<key>}.
func (s *Store) Key(key string) string {
	return s.prefix + "rl:{" + key + "}"
}

// pauseKey is the Redis key of key's upstream pause, in the bucket's hash
// slot: <prefix>up:{<key>}.
func (s *Store) pauseKey(key string) string {
	return s.prefix + "up:{" + key + "}"
}

// Take implements limiter.Store. When ctx ends before the decision is known,
// a batched Take returns ctx.Err() itself (a decision that arrived anyway is
// returned instead); an unbatched one returns go-redis's error wrapped with
// limiter.ErrStoreUnavailable. See New for what that means for the tokens.
func (s *Store) Take(ctx context.Context, key string, lim limiter.Limit, cost int64, maxWait time.Duration) (limiter.Result, error) {
	if err := limiter.ValidateCall(lim, cost, maxWait); err != nil {
		return limiter.Result{}, err
	}
	return s.run(ctx, modeTake, key, lim, cost, maxWait)
}

// Peek implements limiter.Store, with the context errors of Take.
func (s *Store) Peek(ctx context.Context, key string, lim limiter.Limit, cost int64) (limiter.Result, error) {
	if err := limiter.ValidateCall(lim, cost, 0); err != nil {
		return limiter.Result{}, err
	}
	return s.run(ctx, modePeek, key, lim, cost, 0)
}

// Cancel implements limiter.Canceler: one round trip of cancel.lua
// (EVALSHA, falling back to EVAL) under ctx, never batched. Its errors wrap
// limiter.ErrStoreUnavailable; a Cancel that failed gave back nothing or
// everything, as with any network call.
func (s *Store) Cancel(ctx context.Context, key string, lim limiter.Limit, res limiter.Reservation) (bool, error) {
	if err := lim.Validate(); err != nil {
		return false, err
	}
	if !res.Valid(lim) {
		return false, nil
	}
	p := lim.Params()
	now := ""
	if s.now != nil {
		now = strconv.FormatInt(s.now().UnixMicro(), 10)
	}
	v, err := cancelScript.Run(ctx, s.client, []string{s.Key(key)},
		p.M, p.W, p.B, res.TAT, res.TATRem, res.Prev, res.PrevRem, now).Result()
	if err == nil {
		var ok bool
		if ok, err = decodeCancel(v); err == nil {
			return ok, nil
		}
	}
	return false, fmt.Errorf("redisstore: cancel %q: %w: %w", key, limiter.ErrStoreUnavailable, err)
}

// decodeCancel decodes cancel.lua's reply, 1 or 0.
func decodeCancel(v any) (bool, error) {
	n, ok := v.(int64)
	if !ok {
		return false, fmt.Errorf("malformed reply: got %T, want an integer", v)
	}
	if n != 0 && n != 1 {
		return false, fmt.Errorf("malformed reply: got %d, want 0 or 1", n)
	}
	return n == 1, nil
}

const (
	modeTake = "take"
	modePeek = "peek"
)

func (s *Store) run(ctx context.Context, mode, key string, lim limiter.Limit, cost int64, maxWait time.Duration) (limiter.Result, error) {
	c := s.calls.Get().(*call)
	s.fill(c, mode, key, lim, cost, maxWait)
	var res limiter.Result
	var err error
	reuse := true
	if s.batcher != nil {
		res, err, reuse = s.batcher.do(ctx, c)
	} else {
		// One round trip (EVALSHA, falling back to EVAL) under ctx.
		v, rerr := gcraScript.Run(ctx, s.client, []string{c.rkey, c.pkey}, c.argv[5:]...).Result()
		decodeReplies([]*call{c}, v, rerr)
		res, err = c.res, c.err
	}
	if reuse {
		s.calls.Put(c)
	}
	return res, err
}

// newCall returns a call whose argv points at its own fields.
func (s *Store) newCall() *call {
	c := &call{wake: make(chan bool, 1)}
	c.argv = commandLine(make([]any, 0, 12), &s.sha, []*call{c})
	return c
}

// fill sets c up for one decision.
func (s *Store) fill(c *call, mode, key string, lim limiter.Limit, cost int64, maxWait time.Duration) {
	p := lim.Params()
	// The bucket's and the pause's keys in one allocation: the two halves
	// have the same length ("rl:" and "up:").
	both := s.prefix + "rl:{" + key + "}" + s.prefix + "up:{" + key + "}"
	c.mode, c.key, c.rkey, c.pkey = mode, key, both[:len(both)/2], both[len(both)/2:]
	c.nums = [5]int64{p.M, p.W, p.B, cost, int64(maxWait / time.Microsecond)}
	c.now = ""
	if s.now != nil {
		c.now = strconv.FormatInt(s.now().UnixMicro(), 10)
	}
	c.res, c.err = limiter.Result{}, nil
}

// maxPerCall is the most decisions one script call makes: gcra.lua unpacks
// its keys (two a decision) as the arguments of one MGET, which Lua bounds.
const maxPerCall = 128

// exec sends batch as one pipeline and sets every call's result: on one node
// (oneCall) one EVALSHA of gcra.lua for up to maxPerCall decisions, else one
// EVALSHA a decision. A NOSCRIPT reply loads the script and retries those
// commands once with EVAL (see redisscript.Script.Exec).
func (s *Store) exec(ctx context.Context, p Pipeliner, batch []*call) {
	per := 1
	if s.oneCall {
		per = maxPerCall
	}
	part := func(i int) []*call { return batch[i*per : min((i+1)*per, len(batch))] }
	lp := s.lines.Get().(*[]any)
	lines := (*lp)[:0]
	cmds := make([]*redis.Cmd, (len(batch)+per-1)/per)
	for i := range cmds {
		from := len(lines)
		lines = commandLine(lines, &s.sha, part(i))
		cmds[i] = redisscript.NewCmd(ctx, lines[from:len(lines):len(lines)]...)
	}
	gcraScript.Exec(ctx, p, s.client, cmds)
	for i, cmd := range cmds {
		v, err := cmd.Result()
		decodeReplies(part(i), v, err)
	}
	clear(lines)
	*lp = lines[:0]
	s.lines.Put(lp)
}

// commandLine appends to argv the EVALSHA command of gcra.lua that makes the
// decisions of calls (at least one) in one call, and returns it: evalsha sha
// 2n, each call's rkey and pkey, each call's m w b cost max_wait mode, then
// now (every call of a Store has the same clock). Its elements point into
// the calls' fields, as a call's own argv does.
func commandLine(argv []any, sha *string, calls []*call) []any {
	argv = append(argv, "evalsha", sha, 2*len(calls))
	for _, c := range calls {
		argv = append(argv, &c.rkey, &c.pkey)
	}
	for _, c := range calls {
		argv = append(argv, &c.nums[0], &c.nums[1], &c.nums[2], &c.nums[3], &c.nums[4], &c.mode)
	}
	return append(argv, &calls[0].now)
}

// decodeReplies sets the result of each of calls from v, the reply of the
// one script call that made their decisions (an array of one reply each, in
// order), or from err, that call's error. A decision the script could not
// make has an error reply in its place, which fails that call alone.
func decodeReplies(calls []*call, v any, err error) {
	var replies []any
	if err == nil {
		var ok bool
		switch replies, ok = v.([]any); {
		case !ok:
			err = fmt.Errorf("malformed reply: got %T, want an array", v)
		case len(replies) != len(calls):
			err = fmt.Errorf("malformed reply: got %d replies, want %d", len(replies), len(calls))
		}
	}
	for i, c := range calls {
		if err != nil {
			c.res, c.err = decodeReply(c, nil, err)
			continue
		}
		if rerr, ok := replies[i].(error); ok {
			c.res, c.err = decodeReply(c, nil, rerr)
			continue
		}
		c.res, c.err = decodeReply(c, replies[i], nil)
	}
}

// decodeReply turns the script's reply to c, or the error in its place, into
// a decision; every error wraps limiter.ErrStoreUnavailable.
func decodeReply(c *call, v any, err error) (limiter.Result, error) {
	if err == nil {
		var res limiter.Result
		if res, err = decodeResult(v); err == nil {
			return res, nil
		}
	}
	return limiter.Result{}, fmt.Errorf("redisstore: %s %q: %w: %w", c.mode, c.key, limiter.ErrStoreUnavailable, err)
}

// replyLen is the length of gcra.lua's reply.
const replyLen = 10

// decodeResult decodes the script's reply {allowed, remaining, retry_after_us,
// reset_after_us, wait_us, tat, tat_rem, prev, prev_rem, paused}: every
// element an integer >= 0, allowed and paused 0 or 1, and the reservation
// set exactly when wait_us is not 0.
func decodeResult(v any) (limiter.Result, error) {
	var n [replyLen]int64
	if err := decodeInts(v, "reply", n[:]); err != nil {
		return limiter.Result{}, err
	}
	if n[0] > 1 || n[9] > 1 || (n[0] == 1 && n[9] == 1) {
		return limiter.Result{}, fmt.Errorf("malformed reply: allowed %d and paused %d, want 0 or 1 and not both", n[0], n[9])
	}
	if err := checkDurationsUS("reply", n[:], 2, 4); err != nil {
		return limiter.Result{}, err
	}
	r := limiter.Reservation{TAT: n[5], TATRem: n[6], Prev: n[7], PrevRem: n[8]}
	if (n[4] > 0) == r.IsZero() {
		return limiter.Result{}, fmt.Errorf("malformed reply: wait %dµs with reservation [%d %d %d %d %d]", n[4], n[5], n[6], n[7], n[8], n[9])
	}
	return limiter.Result{
		Allowed:     n[0] == 1,
		Remaining:   n[1],
		RetryAfter:  time.Duration(n[2]) * time.Microsecond,
		ResetAfter:  time.Duration(n[3]) * time.Microsecond,
		Wait:        time.Duration(n[4]) * time.Microsecond,
		Reservation: r,
		Paused:      n[9] == 1,
	}, nil
}

// maxDurationUS is the most microseconds a time.Duration holds.
const maxDurationUS = int64(1<<63-1) / int64(time.Microsecond)

// decodeInts copies a script's reply v, which must be an array of len(n)
// integers >= 0, into n. Its errors start "malformed " and what.
func decodeInts(v any, what string, n []int64) error {
	vals, ok := v.([]any)
	if !ok {
		return fmt.Errorf("malformed %s: got %T, want an array", what, v)
	}
	if len(vals) != len(n) {
		return fmt.Errorf("malformed %s: got %d elements, want %d", what, len(vals), len(n))
	}
	for i, x := range vals {
		xi, ok := x.(int64)
		if !ok {
			return fmt.Errorf("malformed %s: element %d is %T, want an integer", what, i, x)
		}
		if xi < 0 {
			return fmt.Errorf("malformed %s: element %d is %d, want >= 0", what, i, xi)
		}
		n[i] = xi
	}
	return nil
}

// checkDurationsUS checks that the microseconds n[from] to n[to] (both
// included) of a reply decoded by decodeInts fit a time.Duration.
func checkDurationsUS(what string, n []int64, from, to int) error {
	for i := from; i <= to; i++ {
		if n[i] > maxDurationUS {
			return fmt.Errorf("malformed %s: element %d is %d µs, more than a time.Duration holds", what, i, n[i])
		}
	}
	return nil
}
