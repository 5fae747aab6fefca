package breaker

import (
	"math"
	"time"
)

// machine is the state of one breaker in MemoryStore. Its rules are the same
// as those of the redisstore Lua scripts: keep them in step. Times are
// microseconds since the Unix epoch, like the Redis scripts.
//
// A machine is not safe for concurrent use: MemoryStore holds its lock.
type machine struct {
	state     State
	gen       uint64
	failures  int64
	openedAt  int64 // µs; 0 if never opened
	successes int64 // successful probes in this HALF_OPEN
	seq       uint64
	probes    map[string]int64  // permit -> lease deadline (µs); expired when deadline <= now; nil until a probe
	buckets   map[int64]*bucket // nil until a failure-rate outcome
	settings  Settings          // last settings used, for List
	lastUsed  int64             // µs; MemoryStore forgets the machine when idle
}

type bucket struct{ calls, failures int64 }

// newMachine returns a CLOSED breaker whose first generation is gen (see
// MemoryStore: the clock in µs, above every generation the store issued).
func newMachine(gen uint64) *machine {
	return &machine{gen: gen}
}

func micros(t time.Time) int64        { return t.UnixMicro() }
func fromMicros(us int64) time.Time   { return time.UnixMicro(us) }
func durMicros(d time.Duration) int64 { return d.Microseconds() }

// transition moves to state to and returns the event.
func (m *machine) transition(name string, to State, now int64, reason string) Event {
	from := m.state
	m.state = to
	m.gen++
	m.failures = 0
	m.successes = 0
	clear(m.probes)
	clear(m.buckets)
	if to == StateOpen {
		m.openedAt = now
	}
	return Event{Name: name, From: from, To: to, Generation: m.gen, At: fromMicros(now), Reason: reason}
}

// reclaim drops the expired probe leases.
func (m *machine) reclaim(now int64) {
	for id, dl := range m.probes {
		if dl <= now {
			delete(m.probes, id)
		}
	}
}

// earliestLease returns the earliest deadline of live leases (0 when none).
func (m *machine) earliestLease() int64 {
	var min int64
	for _, dl := range m.probes {
		if min == 0 || dl < min {
			min = dl
		}
	}
	return min
}

// allow decides whether a call may go at now. s has its defaults applied.
func (m *machine) allow(name string, s Settings, now int64) (Admission, []Event) {
	var events []Event
	switch m.state {
	case StateClosed:
		return Admission{Allowed: true, State: StateClosed, Generation: m.gen}, nil
	case StateOpen:
		at := m.openedAt + durMicros(s.RecoveryTimeout)
		if now < at {
			return Admission{State: StateOpen, Generation: m.gen, RetryAfter: time.Duration(at-now) * time.Microsecond}, nil
		}
		events = append(events, m.transition(name, StateHalfOpen, now, ReasonRecoveryTimeout))
	}
	m.reclaim(now)
	if len(m.probes) < s.HalfOpenMaxCalls {
		m.seq++
		id := PermitID(m.gen, m.seq)
		dl := now + durMicros(s.ProbeTimeout)
		if m.probes == nil {
			m.probes = map[string]int64{}
		}
		m.probes[id] = dl
		return Admission{Allowed: true, State: StateHalfOpen, Generation: m.gen, PermitID: id, ProbeDeadline: fromMicros(dl)}, events
	}
	wait := m.earliestLease() - now
	return Admission{State: StateHalfOpen, Generation: m.gen, RetryAfter: time.Duration(wait) * time.Microsecond}, events
}

// report records an outcome at now.
func (m *machine) report(name string, s Settings, o Outcome, gen uint64, permit string, now int64) (ReportResult, []Event) {
	ignored := func(reason string) (ReportResult, []Event) {
		return ReportResult{Ignored: true, IgnoredReason: reason, State: m.state, Generation: m.gen}, nil
	}
	if gen != 0 && gen != m.gen {
		return ignored(IgnoredStaleGeneration)
	}
	// A permit carries the generation that issued it: a permit of another
	// generation is stale whatever gen says (0 included), and a permit is
	// only ever live in HALF_OPEN (leaving HALF_OPEN starts a new generation).
	if permit != "" {
		pg, _, ok := ParsePermitID(permit)
		switch {
		case !ok:
			return ignored(IgnoredNoPermit)
		case pg != m.gen:
			return ignored(IgnoredStaleGeneration)
		case m.state == StateClosed:
			return ignored(IgnoredNoPermit)
		}
	}
	var events []Event
	switch m.state {
	case StateOpen:
		return ignored(IgnoredOpen)
	case StateHalfOpen:
		m.reclaim(now)
		if _, ok := m.probes[permit]; !ok || permit == "" {
			return ignored(IgnoredNoPermit)
		}
		delete(m.probes, permit)
		if o == OutcomeSuccess {
			m.successes++
			if m.successes >= int64(s.SuccessThreshold) {
				events = append(events, m.transition(name, StateClosed, now, ReasonProbeSucceeded))
			}
		} else {
			events = append(events, m.transition(name, StateOpen, now, ReasonProbeFailed))
		}
	default: // StateClosed
		if o == OutcomeSuccess {
			m.failures = 0
		} else {
			m.failures++
		}
		if s.Mode == ModeConsecutive {
			if m.failures >= int64(s.FailureThreshold) {
				events = append(events, m.transition(name, StateOpen, now, ReasonFailureThreshold))
			}
			break
		}
		width := durMicros(s.Window) / WindowBuckets
		idx := now / width
		b := m.buckets[idx]
		if b == nil {
			if m.buckets == nil {
				m.buckets = map[int64]*bucket{}
			}
			b = &bucket{}
			m.buckets[idx] = b
		}
		b.calls++
		if o == OutcomeFailure {
			b.failures++
		}
		calls, failures := m.window(idx, true)
		if TripsFailureRate(calls, failures, s) {
			events = append(events, m.transition(name, StateOpen, now, ReasonFailureRate))
		}
	}
	return ReportResult{State: m.state, Generation: m.gen}, events
}

// TripsFailureRate reports whether calls and failures over the window open
// the breaker in ModeFailureRate: calls >= MinimumCalls and failures >=
// FailureRateThreshold*calls (float64 arithmetic, the same in the Lua
// scripts). s must have its defaults applied.
func TripsFailureRate(calls, failures int64, s Settings) bool {
	return calls >= int64(s.MinimumCalls) && float64(failures) >= s.FailureRateThreshold*float64(calls)
}

// window sums the buckets in (idx-WindowBuckets, idx], pruning older ones
// when prune is set.
func (m *machine) window(idx int64, prune bool) (calls, failures int64) {
	for i, b := range m.buckets {
		if i <= idx-WindowBuckets {
			if prune {
				delete(m.buckets, i)
			}
			continue
		}
		calls += b.calls
		failures += b.failures
	}
	return calls, failures
}

// status describes the machine at now without changing it.
func (m *machine) status(name string, s Settings, now int64) Status {
	st := Status{
		Name:                name,
		State:               m.state,
		ConsecutiveFailures: m.failures,
		ProbeSuccesses:      m.successes,
		Generation:          m.gen,
		Settings:            s,
	}
	if m.openedAt != 0 {
		st.OpenedAt = fromMicros(m.openedAt)
	}
	switch m.state {
	case StateOpen:
		st.NextProbeAt = fromMicros(m.openedAt + durMicros(s.RecoveryTimeout))
	case StateHalfOpen:
		var earliest int64 = math.MaxInt64
		for _, dl := range m.probes {
			if dl > now {
				st.ProbesInFlight++
				earliest = min(earliest, dl)
			}
		}
		if st.ProbesInFlight < int64(s.HalfOpenMaxCalls) {
			st.NextProbeAt = fromMicros(now)
		} else {
			st.NextProbeAt = fromMicros(earliest)
		}
	case StateClosed:
		if s.Mode == ModeFailureRate && s.Window > 0 {
			st.WindowCalls, st.WindowFailures = m.window(now/(durMicros(s.Window)/WindowBuckets), false)
		}
	}
	return st
}

// reset forces state to (StateClosed or StateOpen).
func (m *machine) reset(name string, to State, now int64) Event {
	return m.transition(name, to, now, ReasonReset)
}
