package breaker_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/topdeck/resilience/breaker"
)

// Nothing a caller sends chooses the store: while the store answers, a
// generation with the local bit or a permit that only looks local goes to the
// store (stale there) and never reaches the local fallback, which would
// otherwise open on a replica for a breaker CLOSED fleet-wide.
func TestBreakerCallerInputNeverChoosesTheStore(t *testing.T) {
	otherNonce := "local:" + strings.Repeat("0", 32) + ":1.1"
	cases := []struct {
		name   string
		gen    uint64
		permit string
	}{
		{"generation 2^63", 1 << 63, ""},
		{"generation 2^63+1", 1<<63 + 1, ""},
		{"generation 2^64-1", math.MaxUint64, ""},
		{"permit local:", 0, "local:"},
		{"permit local:abc", 0, "local:abc"},
		{"permit local:abc with a local generation", 1<<63 | 1, "local:abc"},
		{"local permit with another Breaker's nonce", 0, otherNonce},
		{"local permit with another nonce, local generation", 1<<63 | 1, otherNonce},
		{"local permit without its inner permit", 0, "local:" + strings.Repeat("a", 32) + ":"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			_, store, b := newFlakyBreaker(t, time.Second)
			if _, err := b.Allow(ctx, "b", pol); err != nil { // the shared state exists
				t.Fatal(err)
			}
			for i := range pol.FailureThreshold + 1 {
				r, err := b.Report(ctx, "b", pol, breaker.OutcomeFailure, c.gen, c.permit)
				if err != nil || r.Degraded || !r.Ignored || r.State != breaker.StateClosed {
					t.Fatalf("FAILURE %d with generation %d, permit %q, store up: got %+v, %v; want ignored by the store, CLOSED, not degraded", i+1, c.gen, c.permit, r, err)
				}
			}
			if st, _ := store.Status(ctx, "b", pol); st.ConsecutiveFailures != 0 || st.State != breaker.StateClosed {
				t.Fatalf("shared breaker: got %+v, want CLOSED with no failures", st)
			}
			// The local breaker saw nothing: once the store is down it is
			// still CLOSED with no failures.
			store.down.Store(true)
			st, err := b.Status(ctx, "b", pol)
			if err != nil || !st.Degraded || st.State != breaker.StateClosed || st.ConsecutiveFailures != 0 {
				t.Fatalf("local breaker after the reports: got %+v, %v; want CLOSED with no failures, degraded", st, err)
			}
			if a, err := b.Allow(ctx, "b", pol); err != nil || !a.Allowed || !a.Degraded {
				t.Fatalf("Allow with the store down: got %+v, %v; want allowed by the local breaker", a, err)
			}
		})
	}
}

// A genuine local permit still goes to the local breaker while the store is
// back, and the local breaker decides only while the store is down.
func TestBreakerGenuineLocalPermitGoesLocal(t *testing.T) {
	ctx := context.Background()
	clock, store, b := newFlakyBreaker(t, 0)
	store.down.Store(true)
	a, _ := b.Allow(ctx, "b", pol)
	for range pol.FailureThreshold {
		if r, err := b.Report(ctx, "b", pol, breaker.OutcomeFailure, a.Generation, ""); err != nil || r.Ignored || !r.Degraded {
			t.Fatalf("local failure: got %+v, %v; want counted, degraded", r, err)
		}
	}
	clock.Advance(pol.RecoveryTimeout)
	p, err := b.Allow(ctx, "b", pol)
	if err != nil || !p.Allowed || !p.Degraded || !strings.HasPrefix(p.PermitID, "local:") {
		t.Fatalf("local probe: got %+v, %v; want a degraded probe with a local permit", p, err)
	}
	if err := breaker.ValidatePermitID(p.PermitID); err != nil {
		t.Fatalf("ValidatePermitID(%q) of a permit Breaker issued: %v", p.PermitID, err)
	}
	store.down.Store(false)
	r, err := b.Report(ctx, "b", pol, breaker.OutcomeSuccess, p.Generation, p.PermitID)
	if err != nil || r.Ignored || !r.Degraded || r.State != breaker.StateClosed {
		t.Fatalf("report of the local probe with the store back: got %+v, %v; want counted locally, CLOSED", r, err)
	}
	// The same permit from another Breaker (another process) is not local.
	other := breaker.New(store, breaker.WithClock(clock.Now))
	t.Cleanup(func() { _ = other.Close() })
	if r, err := other.Report(ctx, "b", pol, breaker.OutcomeFailure, 0, p.PermitID); err != nil || r.Degraded || !r.Ignored {
		t.Fatalf("another Breaker's local permit: got %+v, %v; want ignored by the store, not degraded", r, err)
	}
}

func TestValidatePermitID(t *testing.T) {
	nonce := strings.Repeat("0a", 16)
	cases := []struct {
		permit string
		ok     bool
	}{
		{"", true},
		{"1.1", true},
		{breaker.PermitID(math.MaxUint64, math.MaxUint64), true},
		{"local:" + nonce + ":12.3", true},
		{"local:", false},
		{"local:abc", false},
		{"local:" + nonce, false},
		{"local:" + nonce + ":", false},
		{"local:" + strings.ToUpper(nonce) + ":1.1", false},
		{"local:" + nonce + ":local:" + nonce + ":1.1", false},
		{"bogus", false},
		{"1.", false},
		{".1", false},
		{"0.1", false},
		{"01.1", false},
		{"1.01", false},
		{"-1.1", false},
		{"+1.1", false},
		{"1.1.1", false},
		{" 1.1", false},
		{"18446744073709551616.1", false},
		{strings.Repeat("9", 300), false},
		{"1\x00.1", false},
	}
	for _, c := range cases {
		err := breaker.ValidatePermitID(c.permit)
		if c.ok {
			if err != nil {
				t.Errorf("ValidatePermitID(%q): got %v, want nil", c.permit, err)
			}
			continue
		}
		var ia *breaker.InvalidArgumentError
		if !errors.As(err, &ia) || ia.Field != breaker.FieldPermitID || !errors.Is(err, breaker.ErrInvalidArgument) {
			t.Errorf("ValidatePermitID(%q): got %v, want an *InvalidArgumentError for permit_id", c.permit, err)
			continue
		}
		if strings.HasPrefix(ia.Reason, ia.Field) || strings.Contains(ia.Reason, "breaker:") {
			t.Errorf("ValidatePermitID(%q): Reason %q repeats the field or the package", c.permit, ia.Reason)
		}
	}
}

// Every invalid input of the package is one error type, whose sentinel
// follows its field. Argument errors carry the field and a reason that does
// not repeat it, so a server prints "<field>: <reason>" without trimming.
func TestInvalidArgumentErrors(t *testing.T) {
	_, tokenErr := breaker.DecodePageToken("!!not base64!!")
	_, sizeErr := breaker.NormalizePageSize(-1)
	_, stateErr := breaker.ParseState("ajar")
	cases := []struct {
		err      error
		field    string
		sentinel error
		msg      string // the whole message; "" checks only the field and the sentinel
	}{
		{tokenErr, breaker.FieldPageToken, breaker.ErrInvalidArgument, "breaker: invalid argument: page_token: malformed, pass the next_page_token of the previous page"},
		{sizeErr, breaker.FieldPageSize, breaker.ErrInvalidArgument, "breaker: invalid argument: page_size: must not be negative (0 means 100, at most 1000), got -1"},
		{breaker.ValidateName(""), breaker.FieldName, breaker.ErrInvalidName, "breaker: invalid name: name: must not be empty"},
		{breaker.ValidateName(strings.Repeat("x", 300)), breaker.FieldName, breaker.ErrInvalidName, "breaker: invalid name: name: must be at most 256 bytes, got 300"},
		{breaker.InvalidOutcome(7), breaker.FieldOutcome, breaker.ErrInvalidOutcome, ""},
		{breaker.InvalidResetState(breaker.StateHalfOpen), breaker.FieldState, breaker.ErrInvalidState, ""},
		{stateErr, breaker.FieldState, breaker.ErrInvalidState, ""},
		{breaker.Settings{MinimumCalls: -1}.Validate(), "minimum_calls", breaker.ErrInvalidSettings, ""},
	}
	for _, c := range cases {
		var ia *breaker.InvalidArgumentError
		if !errors.As(c.err, &ia) || ia.Field != c.field || !errors.Is(c.err, c.sentinel) {
			t.Errorf("error %v: got %v, want an *InvalidArgumentError for %s matching %v", c.err, ia, c.field, c.sentinel)
			continue
		}
		if c.msg != "" && c.err.Error() != c.msg {
			t.Errorf("message: got %q, want %q", c.err.Error(), c.msg)
		}
	}
	if err := breaker.ValidateName(""); errors.Is(err, breaker.ErrInvalidArgument) {
		t.Errorf("a name error matches ErrInvalidArgument: servers map that to another field")
	}
}
