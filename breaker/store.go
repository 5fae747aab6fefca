package breaker

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Store keeps the state of breakers and makes their decisions atomically.
// Implementations: MemoryStore (one replica) and redisstore.Store (shared by
// every replica). All methods are safe for concurrent use.
//
// Methods that take Settings validate them and the name first (errors wrap
// ErrInvalidSettings / ErrInvalidName). A store that cannot answer returns an
// error wrapping ErrStoreUnavailable, never a made-up decision.
type Store interface {
	// Allow decides whether a call may go now. In HALF_OPEN an admitted call is
	// a probe and carries a PermitID.
	Allow(ctx context.Context, name string, s Settings) (Admission, error)
	// Report records the outcome of a call admitted at generation (0 =
	// unknown: the current one), with its permitID when it was a probe.
	// Outcomes that do not count are answered with ReportResult.Ignored, not
	// an error.
	Report(ctx context.Context, name string, s Settings, o Outcome, generation uint64, permitID string) (ReportResult, error)
	// Status returns the breaker's state without changing it.
	Status(ctx context.Context, name string, s Settings) (Status, error)
	// Reset forces the breaker to StateClosed or StateOpen (an operator's
	// action): new generation, counters and probes cleared, Event with
	// ReasonReset. Other states give ErrInvalidState.
	Reset(ctx context.Context, name string, s Settings, to State) (Status, error)
	// Release gives back a probe lease that was never used (for example the
	// rate limiter denied the call after the breaker admitted it). Unknown,
	// expired or empty permits are a no-op.
	Release(ctx context.Context, name string, permitID string) error
	// List returns the statuses of the breakers whose names start with
	// prefix, in name order, pageSize at a time (0 = 100, at most 1000), and
	// the token of the next page ("" on the last page). Statuses carry the
	// Settings last stored with the breaker's state (zero when none was).
	List(ctx context.Context, prefix string, pageSize int, pageToken string) ([]Status, string, error)
	// Watch returns a channel of the transitions of breakers whose names
	// start with prefix, from the moment Watch returns. The channel is closed
	// when ctx ends or the store closes, and also when the receiver falls
	// behind by more than DefaultWatchBuffer events: it is disconnected
	// rather than left with a silent gap (watch again; see Hub). An Event
	// with ReasonResync (and no Name) signals a possible gap.
	Watch(ctx context.Context, prefix string) (<-chan Event, error)
}

// Admission is the answer of Allow. The zero value denies nothing useful: it
// is Allowed=false in StateClosed.
type Admission struct {
	// Allowed says whether the call may go.
	Allowed bool
	// State is the breaker's state after the decision.
	State State
	// Generation is the breaker's generation; pass it back to Report.
	Generation uint64
	// PermitID is set when the call is a HALF_OPEN probe; pass it to Report
	// (or Release). It encodes the generation and a unique sequence number.
	PermitID string
	// ProbeDeadline is when the probe's lease ends (zero when not a probe).
	ProbeDeadline time.Time
	// RetryAfter, when not Allowed, is the time until a call may be admitted:
	// opened_at + recovery_timeout - now in OPEN, the earliest lease deadline
	// in a full HALF_OPEN.
	RetryAfter time.Duration
	// Degraded is set by Breaker when the store was unavailable and a local,
	// per-replica breaker decided. Stores never set it.
	Degraded bool
}

// ReportResult is the answer of Report.
type ReportResult struct {
	// Ignored is true when the outcome did not count; IgnoredReason says why
	// (IgnoredStaleGeneration, IgnoredNoPermit, IgnoredOpen).
	Ignored       bool
	IgnoredReason string
	// State and Generation are the breaker's after the report.
	State      State
	Generation uint64
	// Degraded: see Admission.Degraded.
	Degraded bool
}

// Status describes one breaker. The zero value is a CLOSED breaker with no
// name.
type Status struct {
	Name  string
	State State
	// ConsecutiveFailures counts failures in a row in CLOSED.
	ConsecutiveFailures int64
	// WindowCalls and WindowFailures are the outcomes in the rolling window
	// (ModeFailureRate only).
	WindowCalls    int64
	WindowFailures int64
	// ProbeSuccesses counts successful probes in the current HALF_OPEN.
	ProbeSuccesses int64
	Generation     uint64
	// OpenedAt is when the breaker last opened (zero if never since its state
	// was created).
	OpenedAt time.Time
	// NextProbeAt is when a call may next be admitted in OPEN or a full
	// HALF_OPEN (now when a HALF_OPEN slot is free); zero in CLOSED.
	NextProbeAt time.Time
	// ProbesInFlight counts live probe leases in HALF_OPEN.
	ProbesInFlight int64
	// Settings are the settings in force, with defaults applied.
	Settings Settings
	// Degraded: see Admission.Degraded.
	Degraded bool
}

// Event is one transition of one breaker.
type Event struct {
	Name string
	From State
	To   State
	// Generation is the breaker's generation after the transition.
	Generation uint64
	At         time.Time
	// Reason is one of the Reason... constants.
	Reason string
}

// String formats e for logs.
func (e Event) String() string {
	return fmt.Sprintf("%s %s->%s gen=%d reason=%s at=%s", e.Name, e.From, e.To, e.Generation, e.Reason, e.At.Format(time.RFC3339Nano))
}

// Page size bounds of List.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// NormalizePageSize applies List's page size rules: 0 means DefaultPageSize,
// larger than MaxPageSize is capped, negative is an *InvalidArgumentError
// (FieldPageSize).
func NormalizePageSize(n int) (int, error) {
	switch {
	case n < 0:
		return 0, invalidArg(FieldPageSize, "must not be negative (0 means %d, at most %d), got %d", DefaultPageSize, MaxPageSize, n)
	case n == 0:
		return DefaultPageSize, nil
	case n > MaxPageSize:
		return MaxPageSize, nil
	}
	return n, nil
}

// EncodePageToken makes an opaque List page token from the last name
// returned. Stores use it; callers treat tokens as opaque.
func EncodePageToken(lastName string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(lastName))
}

// DecodePageToken returns the last name encoded in token ("" for "").
// A malformed token is an *InvalidArgumentError (FieldPageToken).
func DecodePageToken(token string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) > MaxNameBytes {
		return "", invalidArg(FieldPageToken, "malformed, pass the next_page_token of the previous page")
	}
	return string(b), nil
}

// PermitID formats the permit of probe seq in generation gen. The format is
// "<gen>.<seq>"; callers treat it as opaque.
func PermitID(gen, seq uint64) string {
	return strconv.FormatUint(gen, 10) + "." + strconv.FormatUint(seq, 10)
}

// MaxPermitIDLen is the longest permit a store issues: two 20-digit numbers
// and a dot. Breaker's local permits are longer (see ValidatePermitID).
const MaxPermitIDLen = 41

// ParsePermitID returns the generation and sequence number of a permit made
// by PermitID. ok is false for anything else: an empty string, signs, leading
// zeros, zero values, numbers above 2^64-1 or other characters. It never
// panics and allocates nothing.
func ParsePermitID(p string) (gen, seq uint64, ok bool) {
	dot := strings.IndexByte(p, '.')
	if dot < 0 {
		return 0, 0, false
	}
	gen, ok = parseCanonical(p[:dot])
	if !ok {
		return 0, 0, false
	}
	seq, ok = parseCanonical(p[dot+1:])
	if !ok {
		return 0, 0, false
	}
	return gen, seq, true
}

// parseCanonical parses a positive decimal number without sign or leading
// zeros that fits in a uint64.
func parseCanonical(s string) (uint64, bool) {
	if s == "" || len(s) > 20 || s[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}
