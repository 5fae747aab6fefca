package breaker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"sync/atomic"
	"time"
)

// LocalGenerationBit is set in the generations that Breaker returns when its
// local fallback decided (Degraded answers), so local and shared generations
// never mix. The stores never issue such a generation (theirs stay below
// 2^53): while the store answers, an outcome carrying this bit goes to the
// store, which ignores it as stale. Only while the store is down does Report
// hand it to the local breaker, which checks it against its own generation.
const LocalGenerationBit uint64 = 1 << 63

// localPermitPrefix starts the permits of the local fallback:
// "local:<nonce>:<permit of the local MemoryStore>", where nonce is random
// per Breaker, so that no caller can forge one.
const localPermitPrefix = "local:"

// nonceLen is the length of a Breaker's nonce (hex of 16 random bytes).
const nonceLen = 32

// MaxPermitLen is the longest permit that Breaker issues: a local permit,
// "local:" + 32 hex digits + ":" + a store permit (MaxPermitIDLen).
const MaxPermitLen = len(localPermitPrefix) + nonceLen + 1 + MaxPermitIDLen

// ValidatePermitID returns an *InvalidArgumentError (FieldPermitID) unless p
// is "" or has the shape of a permit that a Store or a Breaker issues:
// "<generation>.<sequence>" (positive decimals without leading zeros, see
// ParsePermitID) or "local:<32 hex digits>:<generation>.<sequence>", at most
// MaxPermitLen bytes. A server calls it on the permit_id of a request; the
// stores themselves ignore a malformed permit (IgnoredNoPermit).
//
// It checks the shape only. A well-formed permit that is not live (spent,
// expired, of another generation, or local with another process's nonce) is
// no error: Report ignores it.
func ValidatePermitID(p string) error {
	if p == "" {
		return nil
	}
	if len(p) > MaxPermitLen {
		return invalidArg(FieldPermitID, "must be at most %d bytes, got %d; pass the permit_id of the AcquireResponse", MaxPermitLen, len(p))
	}
	inner := p
	if rest, ok := strings.CutPrefix(p, localPermitPrefix); ok {
		nonce, in, found := strings.Cut(rest, ":")
		if !found || !isNonce(nonce) {
			return invalidArg(FieldPermitID, "malformed; pass the permit_id of the AcquireResponse unchanged")
		}
		inner = in
	}
	if _, _, ok := ParsePermitID(inner); !ok {
		return invalidArg(FieldPermitID, "malformed; pass the permit_id of the AcquireResponse unchanged")
	}
	return nil
}

func isNonce(s string) bool {
	if len(s) != nonceLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// DefaultStoreRetryInterval is how long Breaker decides locally after a
// store error before it tries the store again.
const DefaultStoreRetryInterval = time.Second

// Breaker is the entry point of the domain: a Store with a local fallback.
// When the store is unavailable (an error wrapping ErrStoreUnavailable) it
// decides with a per-replica MemoryStore and marks its answers Degraded: it
// never reports OPEN because Redis is down, only what the local breaker saw.
// After a store error it keeps deciding locally for the retry interval
// (WithStoreRetryInterval), then uses the shared state again as soon as the
// store answers.
//
// What a caller sends never chooses the store: Report and Release go to the
// local breaker only with a permit that this Breaker's fallback issued (it
// carries a random per-Breaker nonce, see ValidatePermitID), or while the
// store is unavailable.
//
// Breaker implements Store. Reset, List and Watch have no fallback: they
// return the store's error. Create it with New; the zero value is not usable.
// It is safe for concurrent use and starts no goroutine.
type Breaker struct {
	store Store
	local *MemoryStore // nil without fallback
	now   func() time.Time
	retry time.Duration
	// localPrefix is "local:<nonce>:", the start of this Breaker's local
	// permits; nonce is random per Breaker.
	localPrefix string
	// states, when set, admits CLOSED breakers without the store and
	// observes the store's answers (WithStateCache).
	states *StateCache

	downUntil atomic.Int64 // UnixNano until which the store is skipped
}

var _ Store = (*Breaker)(nil)

// Option configures a Breaker.
type Option func(*breakerOptions)

type breakerOptions struct {
	now      func() time.Time
	retry    time.Duration
	fallback bool
	states   *StateCache
}

// WithClock sets the clock of the local fallback and of the retry interval
// (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *breakerOptions) { o.now = now } }

// WithStoreRetryInterval sets how long to decide locally after a store error
// before trying the store again (default 1s; 0 tries the store every call).
func WithStoreRetryInterval(d time.Duration) Option {
	return func(o *breakerOptions) { o.retry = d }
}

// WithStateCache makes the Breaker skip the store for breakers that c knows
// to be CLOSED: Allow admits their calls at once, with the generation c
// knows. CLOSED admits every call, and that generation makes the late
// outcome of a call admitted just before a transition count as stale, as it
// would have. Every answer of the store (Allow, Report, Reset; not the local
// fallback's) is observed in c. Feed c with the store's events too
// (StateCache.Run on this Breaker), so that a transition made by another
// replica is seen; without them an entry is trusted for c's max age only.
// Default: no cache, every call asks the store.
func WithStateCache(c *StateCache) Option { return func(o *breakerOptions) { o.states = c } }

// WithoutLocalFallback makes the Breaker return store errors instead of
// deciding locally (fail closed: the caller decides what an error means).
func WithoutLocalFallback() Option { return func(o *breakerOptions) { o.fallback = false } }

// New returns a Breaker on store.
func New(store Store, opts ...Option) *Breaker {
	o := breakerOptions{now: time.Now, retry: DefaultStoreRetryInterval, fallback: true}
	for _, opt := range opts {
		opt(&o)
	}
	var nonce [nonceLen / 2]byte
	_, _ = rand.Read(nonce[:]) // crypto/rand.Read never fails
	b := &Breaker{store: store, now: o.now, retry: o.retry, localPrefix: localPermitPrefix + hex.EncodeToString(nonce[:]) + ":", states: o.states}
	if o.fallback {
		b.local = NewMemoryStore(WithMemoryClock(o.now))
	}
	return b
}

// useStore reports whether to ask the store (false while it is considered down).
func (b *Breaker) useStore() bool {
	return b.local == nil || b.now().UnixNano() >= b.downUntil.Load()
}

// fallback reports whether err allows a local decision, and if so marks the
// store down for the retry interval.
func (b *Breaker) fallback(ctx context.Context, err error) bool {
	if b.local == nil || ctx.Err() != nil || !errors.Is(err, ErrStoreUnavailable) {
		return false
	}
	b.downUntil.Store(b.now().Add(b.retry).UnixNano())
	return true
}

// localPermit returns the local MemoryStore's permit inside p when p is a
// permit of this Breaker's local fallback (it carries this Breaker's nonce).
func (b *Breaker) localPermit(p string) (string, bool) {
	if b.local == nil {
		return "", false
	}
	return strings.CutPrefix(p, b.localPrefix)
}

// Allow implements Store. With a state cache (WithStateCache), a breaker
// known to be CLOSED is admitted without a store round trip.
func (b *Breaker) Allow(ctx context.Context, name string, s Settings) (Admission, error) {
	if b.states != nil {
		if st, gen, ok := b.states.Lookup(name); ok && st == StateClosed {
			return Admission{Allowed: true, State: st, Generation: gen}, nil
		}
	}
	if b.useStore() {
		a, err := b.store.Allow(ctx, name, s)
		if err == nil {
			b.observe(name, a.State, a.Generation)
		}
		if err == nil || !b.fallback(ctx, err) {
			return a, err
		}
	}
	a, err := b.local.Allow(ctx, name, s)
	if err != nil {
		return Admission{}, err
	}
	a.Generation |= LocalGenerationBit
	if a.PermitID != "" {
		a.PermitID = b.localPrefix + a.PermitID
	}
	a.Degraded = true
	return a, nil
}

// Report implements Store. An outcome with a permit of this Breaker's local
// fallback (it carries the Breaker's nonce, so it cannot be forged) goes to
// the local breaker. Everything else goes to the store while it answers,
// whatever the caller sent: a generation with LocalGenerationBit or a permit
// that looks local is only stale there. When the store is unavailable, an
// outcome of a call admitted locally counts in the local breaker if its
// generation is the local one, and an outcome of a call the store admitted
// counts in the local breaker at its current generation.
func (b *Breaker) Report(ctx context.Context, name string, s Settings, o Outcome, generation uint64, permitID string) (ReportResult, error) {
	if inner, ok := b.localPermit(permitID); ok {
		return b.localReport(ctx, name, s, o, generation&^LocalGenerationBit, inner)
	}
	if b.useStore() {
		r, err := b.store.Report(ctx, name, s, o, generation, permitID)
		if err == nil {
			b.observe(name, r.State, r.Generation)
		}
		if err == nil || !b.fallback(ctx, err) {
			return r, err
		}
	}
	if generation&LocalGenerationBit != 0 {
		return b.localReport(ctx, name, s, o, generation&^LocalGenerationBit, "")
	}
	return b.localReport(ctx, name, s, o, 0, "")
}

func (b *Breaker) localReport(ctx context.Context, name string, s Settings, o Outcome, gen uint64, permit string) (ReportResult, error) {
	r, err := b.local.Report(ctx, name, s, o, gen, permit)
	if err != nil {
		return ReportResult{}, err
	}
	r.Generation |= LocalGenerationBit
	r.Degraded = true
	return r, nil
}

// Status implements Store; it falls back to the local breaker's status.
func (b *Breaker) Status(ctx context.Context, name string, s Settings) (Status, error) {
	if b.useStore() {
		st, err := b.store.Status(ctx, name, s)
		if err == nil || !b.fallback(ctx, err) {
			return st, err
		}
	}
	st, err := b.local.Status(ctx, name, s)
	if err != nil {
		return Status{}, err
	}
	if st.Generation != 0 { // 0: the local breaker has no state
		st.Generation |= LocalGenerationBit
	}
	st.Degraded = true
	return st, nil
}

// Reset implements Store. It has no fallback: an operator must know that the
// shared state was not changed. The local breaker is left alone: it only
// reflects what this replica saw while the store was down.
func (b *Breaker) Reset(ctx context.Context, name string, s Settings, to State) (Status, error) {
	st, err := b.store.Reset(ctx, name, s, to)
	if err == nil {
		b.observe(name, st.State, st.Generation)
	}
	return st, err
}

// observe records an answer of the store in the state cache, if any.
func (b *Breaker) observe(name string, st State, gen uint64) {
	if b.states != nil {
		b.states.Observe(name, st, gen)
	}
}

// Release implements Store. A permit of the local fallback (with this
// Breaker's nonce) is released locally, any other on the store. A store
// error is ignored when the fallback is on: the lease expires by itself
// after ProbeTimeout.
func (b *Breaker) Release(ctx context.Context, name string, permitID string) error {
	if inner, ok := b.localPermit(permitID); ok {
		return b.local.Release(ctx, name, inner)
	}
	err := b.store.Release(ctx, name, permitID)
	if err != nil && b.fallback(ctx, err) {
		return nil
	}
	return err
}

// List implements Store (the store's List, no fallback).
func (b *Breaker) List(ctx context.Context, prefix string, pageSize int, pageToken string) ([]Status, string, error) {
	return b.store.List(ctx, prefix, pageSize, pageToken)
}

// Watch implements Store (the store's Watch, no fallback).
func (b *Breaker) Watch(ctx context.Context, prefix string) (<-chan Event, error) {
	return b.store.Watch(ctx, prefix)
}

// Announce implements Announcer: it hands e to the store's watchers when the
// store is an Announcer, and does nothing otherwise.
func (b *Breaker) Announce(e Event) {
	if a, ok := b.store.(Announcer); ok {
		a.Announce(e)
	}
}

var _ Announcer = (*Breaker)(nil)

// Close releases the local fallback. It does not close the store.
func (b *Breaker) Close() error {
	if b.local != nil {
		return b.local.Close()
	}
	return nil
}
