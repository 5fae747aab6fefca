package limiter

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// Slots is a concurrency limit: at most MaxInFlight calls admitted on a key
// and not yet released, fleet-wide (a distributed bulkhead). A call takes
// one slot when it is admitted ([Limiter.AcquireAll]) and holds it until
// [Limiter.ReleaseSlots] or until Lease has passed since its admission,
// whichever comes first: the slot of a caller that died is reclaimed when
// its lease ends. A key's slots are kept apart from its token bucket, so a
// key may have both a rate limit and a concurrency limit.
//
// The zero value is no concurrency limit. A Slots is a plain value, safe to
// copy.
type Slots struct {
	// MaxInFlight is the most slots held at once; 1 to MaxInFlightLimit.
	MaxInFlight int64
	// Lease is how long one slot is held at most: more than 0, a whole
	// number of milliseconds, at most MaxSlotLease.
	Lease time.Duration
}

// Bounds of a Slots.
const (
	MaxInFlightLimit = 1_000_000
	MaxSlotLease     = time.Hour
)

// Enabled reports whether s asks for a concurrency limit (either field set;
// Validate then checks both).
func (s Slots) Enabled() bool { return s.MaxInFlight != 0 || s.Lease != 0 }

// Validate reports whether s is a usable concurrency limit. Errors are
// *InvalidArgumentError values naming max_in_flight or in_flight_lease.
func (s Slots) Validate() error {
	if s.MaxInFlight < 1 || s.MaxInFlight > MaxInFlightLimit {
		return invalid("max_in_flight", "must be between 1 and %d, got %d", MaxInFlightLimit, s.MaxInFlight)
	}
	if s.Lease <= 0 || s.Lease > MaxSlotLease {
		return invalid("in_flight_lease", "must be more than 0 and at most %v with max_in_flight, got %v", MaxSlotLease, s.Lease)
	}
	if s.Lease%time.Millisecond != 0 {
		return invalid("in_flight_lease", "must be a whole number of milliseconds, got %v", s.Lease)
	}
	return nil
}

// TicketTTL is how long a caller queued for a slot (AcquireAll with a
// MaxWait) keeps its place without asking again: a waiter that vanished
// holds up the queue for at most this long.
const TicketTTL = 250 * time.Millisecond

// NewSlotID returns a fresh random slot identifier: 32 hex digits.
func NewSlotID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	return hex.EncodeToString(b[:])
}

// ValidSlotID reports whether id has the form NewSlotID returns.
func ValidSlotID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}
