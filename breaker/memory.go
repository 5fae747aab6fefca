package breaker

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"
)

// MemoryStore is a Store that keeps every breaker in the memory of one
// process. It is exact for one replica and is the embedded default when no
// Redis is configured; Breaker also uses one as its local fallback.
//
// Create it with NewMemoryStore; the zero value is not usable. It is safe for
// concurrent use. A breaker that nothing used for its Settings.KeepFor(idle
// TTL) is forgotten, as the Redis store's keys expire: memory is bounded by
// the breakers in use, not by every name ever seen. The sweep runs lazily
// inside the calls, once the calls since the last sweep reach the number of
// breakers (O(1) per call amortised), and before each List. Watchers share
// one Hub (see Watch); the store starts no goroutine.
type MemoryStore struct {
	now     func() time.Time
	idleTTL time.Duration
	hub     *Hub

	mu         sync.Mutex // protects the fields below
	machines   map[string]*machine
	maxGen     uint64 // the highest generation issued (see machineLocked)
	sinceSweep int    // calls since the last sweep
}

// MemoryOption configures a MemoryStore.
type MemoryOption func(*MemoryStore)

// WithMemoryClock sets the clock of a MemoryStore (default time.Now).
func WithMemoryClock(now func() time.Time) MemoryOption {
	return func(m *MemoryStore) { m.now = now }
}

// WithMemoryIdleTTL sets how long an unused breaker is kept, on top of the
// margins of Settings.KeepFor (default DefaultIdleTTL).
func WithMemoryIdleTTL(d time.Duration) MemoryOption {
	return func(m *MemoryStore) { m.idleTTL = d }
}

// NewMemoryStore returns an empty MemoryStore. It starts no goroutine.
func NewMemoryStore(opts ...MemoryOption) *MemoryStore {
	m := &MemoryStore{
		now:      time.Now,
		idleTTL:  DefaultIdleTTL,
		machines: map[string]*machine{},
		hub:      NewHub(DefaultWatchBuffer),
	}
	for _, o := range opts {
		o(m)
	}
	return m
}

var _ Store = (*MemoryStore)(nil)

// minSweep is the fewest calls between two sweeps.
const minSweep = 64

// machineLocked returns the machine of name, creating it, and marks it used
// at now.
func (m *MemoryStore) machineLocked(name string, s Settings, now int64) *machine {
	if m.sinceSweep++; m.sinceSweep >= max(len(m.machines), minSweep) {
		m.sweepLocked(now)
	}
	mc := m.machines[name]
	if mc == nil {
		// A new state starts at the clock in µs, and above every generation
		// this store issued, so that a breaker forgotten (idle) and used
		// again never repeats a generation; after a restart the clock has
		// moved past the old ones (unless breakers changed state more than
		// once per µs on average, see the package doc).
		mc = newMachine(max(uint64(max(now, 1)), m.maxGen+1))
		m.maxGen = mc.gen
		m.machines[name] = mc
	}
	mc.settings = s
	mc.lastUsed = now
	return mc
}

// sweepLocked forgets the breakers unused for their KeepFor(idle TTL).
func (m *MemoryStore) sweepLocked(now int64) {
	m.sinceSweep = 0
	for name, mc := range m.machines {
		if now-mc.lastUsed > durMicros(mc.settings.KeepFor(m.idleTTL)) {
			delete(m.machines, name)
		}
	}
}

// publishLocked sends events to matching watchers without blocking, and
// records the generations they reached.
func (m *MemoryStore) publishLocked(events []Event) {
	for _, e := range events {
		m.maxGen = max(m.maxGen, e.Generation)
		m.hub.Publish(e)
	}
}

// begin starts a call on name: it prepares s (see Prepare), fails with bad
// (nil: no error) when s is fine but another argument is not, reads the
// clock and locks m, which the caller unlocks.
func (m *MemoryStore) begin(name string, s Settings, bad error) (Settings, int64, error) {
	s, err := Prepare(name, s)
	if err == nil {
		err = bad
	}
	if err != nil {
		return Settings{}, 0, err
	}
	now := micros(m.now())
	m.mu.Lock()
	return s, now, nil
}

// Allow implements Store.
func (m *MemoryStore) Allow(ctx context.Context, name string, s Settings) (Admission, error) {
	s, now, err := m.begin(name, s, nil)
	if err != nil {
		return Admission{}, err
	}
	defer m.mu.Unlock()
	adm, events := m.machineLocked(name, s, now).allow(name, s, now)
	m.publishLocked(events)
	return adm, nil
}

// Report implements Store.
func (m *MemoryStore) Report(ctx context.Context, name string, s Settings, o Outcome, generation uint64, permitID string) (ReportResult, error) {
	s, now, err := m.begin(name, s, checkOutcome(o))
	if err != nil {
		return ReportResult{}, err
	}
	defer m.mu.Unlock()
	res, events := m.machineLocked(name, s, now).report(name, s, o, generation, permitID, now)
	m.publishLocked(events)
	return res, nil
}

// Status implements Store.
func (m *MemoryStore) Status(ctx context.Context, name string, s Settings) (Status, error) {
	s, now, err := m.begin(name, s, nil)
	if err != nil {
		return Status{}, err
	}
	defer m.mu.Unlock()
	if m.machines[name] == nil {
		// No state (never used, or forgotten): CLOSED, no generation yet.
		// Status does not create one; the next Allow or Report does.
		return Status{Name: name, State: StateClosed, Settings: s}, nil
	}
	return m.machineLocked(name, s, now).status(name, s, now), nil
}

// Reset implements Store.
func (m *MemoryStore) Reset(ctx context.Context, name string, s Settings, to State) (Status, error) {
	s, now, err := m.begin(name, s, checkResetState(to))
	if err != nil {
		return Status{}, err
	}
	defer m.mu.Unlock()
	mc := m.machineLocked(name, s, now)
	m.publishLocked([]Event{mc.reset(name, to, now)})
	return mc.status(name, s, now), nil
}

// Release implements Store.
func (m *MemoryStore) Release(ctx context.Context, name string, permitID string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if mc := m.machines[name]; mc != nil {
		delete(mc.probes, permitID)
	}
	return nil
}

// List implements Store.
func (m *MemoryStore) List(ctx context.Context, prefix string, pageSize int, pageToken string) ([]Status, string, error) {
	size, err := NormalizePageSize(pageSize)
	if err != nil {
		return nil, "", err
	}
	after, err := DecodePageToken(pageToken)
	if err != nil {
		return nil, "", err
	}
	now := micros(m.now())
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweepLocked(now)
	var names []string
	for n := range m.machines {
		if strings.HasPrefix(n, prefix) && (pageToken == "" || n > after) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	next := ""
	if len(names) > size {
		names = names[:size]
		next = EncodePageToken(names[size-1])
	}
	out := make([]Status, 0, len(names))
	for _, n := range names {
		mc := m.machines[n]
		out = append(out, mc.status(n, mc.settings, now))
	}
	return out, next, nil
}

// Watch implements Store. Watchers share the store's Hub: a watcher that
// falls behind by DefaultWatchBuffer events is disconnected (its channel is
// closed).
func (m *MemoryStore) Watch(ctx context.Context, prefix string) (<-chan Event, error) {
	return m.hub.Watch(ctx, prefix)
}

// Announce implements Announcer: it delivers e to this store's watchers.
func (m *MemoryStore) Announce(e Event) { m.hub.Publish(e) }

// Close ends every watcher. The store still answers decisions afterwards;
// Watch fails.
func (m *MemoryStore) Close() error {
	m.hub.Close()
	return nil
}
