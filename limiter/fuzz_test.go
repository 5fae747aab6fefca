package limiter_test

import (
	"context"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/topdeck/resilience/limiter"
)

// fields are the wire names an InvalidArgumentError from ValidateCall may
// carry.
var fields = map[string]bool{"max_calls": true, "time_window": true, "burst": true, "cost": true, "max_wait": true}

// FuzzValidateCall checks that validation never panics, that every error is
// an InvalidArgumentError naming a known field with a message that shows no
// empty range, that a valid limit's Params are MaxCalls/Window in lowest
// terms within the exact-arithmetic bounds, and that a valid call decides
// without panicking and within its bounds, also right after a limit change.
// The seed corpus is in testdata/fuzz/FuzzValidateCall.
func FuzzValidateCall(f *testing.F) {
	year := int64(365 * 24 * time.Hour)
	f.Add(int64(10), int64(time.Second), int64(0), int64(1), int64(0))
	f.Add(int64(1), 100*year, int64(0), int64(1), int64(0))
	f.Add(int64(1), int64(1<<63-1), int64(0), int64(1), int64(0))
	f.Add(int64(99_991), int64(24*time.Hour), int64(0), int64(1), int64(0))
	f.Add(int64(3), int64(time.Second), int64(2), int64(2), int64(time.Hour))
	f.Add(int64(-1), int64(-1), int64(-1), int64(-1), int64(-1))
	f.Fuzz(func(t *testing.T, maxCalls, window, burst, cost, maxWait int64) {
		lim := limiter.Limit{MaxCalls: maxCalls, Window: time.Duration(window), Burst: burst}
		err := limiter.ValidateCall(lim, cost, time.Duration(maxWait))
		verr := lim.Validate()
		for _, e := range []error{err, verr} {
			if e == nil {
				continue
			}
			var ia *limiter.InvalidArgumentError
			if !errors.As(e, &ia) || !errors.Is(e, limiter.ErrInvalidArgument) || !fields[ia.Field] {
				t.Fatalf("%+v: error %v is not an InvalidArgumentError naming a known field", lim, e)
			}
			if msg := e.Error(); strings.Contains(msg, "<= 0") || strings.Contains(msg, "between 1 and 0") || !strings.HasPrefix(msg, "limiter: "+ia.Field+" ") {
				t.Fatalf("%+v: unclear message %q", lim, msg)
			}
		}
		if verr != nil {
			if err == nil {
				t.Fatalf("%+v: ValidateCall nil but Validate = %v", lim, verr)
			}
			return
		}
		checkParams(t, lim)
		if err != nil {
			return
		}
		checkDecide(t, lim, cost, time.Duration(maxWait))
	})
}

func checkParams(t *testing.T, lim limiter.Limit) {
	t.Helper()
	p := lim.Params()
	const maxScaled = 1 << 51
	if p.M <= 0 || p.W <= 0 || p.B <= 0 || p.M > maxScaled || p.B > maxScaled/p.W {
		t.Fatalf("%+v: Params %+v out of bounds", lim, p)
	}
	if g := new(big.Int).GCD(nil, nil, big.NewInt(p.M), big.NewInt(p.W)); g.Int64() != 1 {
		t.Fatalf("%+v: Params %+v not in lowest terms", lim, p)
	}
	// M/W == MaxCalls / (Window in µs).
	lhs := new(big.Int).Mul(big.NewInt(p.M), big.NewInt(int64(lim.Window/time.Microsecond)))
	rhs := new(big.Int).Mul(big.NewInt(p.W), big.NewInt(lim.MaxCalls))
	if lhs.Cmp(rhs) != 0 {
		t.Fatalf("%+v: Params %+v is not MaxCalls per Window", lim, p)
	}
	if want := lim.Normalized().Burst; p.B != want {
		t.Fatalf("%+v: Params.B = %d, want the effective burst %d", lim, p.B, want)
	}
	if n := lim.Normalized(); n.Validate() != nil || n.Params() != p {
		t.Fatalf("%+v: Normalized %+v does not round-trip", lim, n)
	}
	if lim.MaxWait() < 0 {
		t.Fatalf("%+v: MaxWait %v < 0", lim, lim.MaxWait())
	}
}

// checkDecide makes decisions under lim on a fresh bucket and on one left
// drained by a limit of 1 per 70 years.
func checkDecide(t *testing.T, lim limiter.Limit, cost int64, maxWait time.Duration) {
	t.Helper()
	now := time.Unix(1_700_000_000, 0)
	s := limiter.NewMemoryStore(limiter.WithMemoryClock(func() time.Time { return now }))
	ctx := context.Background()
	p := lim.Params()
	check := func(what string, res limiter.Result, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%+v cost %d maxWait %v: %s: %v", lim, cost, maxWait, what, err)
		}
		if res.Remaining < 0 || res.Remaining > p.B || res.RetryAfter < 0 || res.ResetAfter < 0 || res.Wait < 0 || res.Wait > maxWait {
			t.Fatalf("%+v cost %d maxWait %v: %s = %+v out of bounds", lim, cost, maxWait, what, res)
		}
	}
	for range 3 {
		res, err := s.Take(ctx, "k", lim, cost, maxWait)
		check("Take", res, err)
		if res.Wait > 0 {
			if ok, err := s.Cancel(ctx, "k", lim, res.Reservation); err != nil || !ok {
				t.Fatalf("%+v: Cancel of the last reservation = (%v, %v)", lim, ok, err)
			}
		}
		res, err = s.Peek(ctx, "k", lim, cost)
		check("Peek", res, err)
	}
	long := limiter.Limit{MaxCalls: 1, Window: 70 * 365 * 24 * time.Hour}
	if _, err := s.Take(ctx, "drained", long, 1, 0); err != nil {
		t.Fatal(err)
	}
	res, err := s.Take(ctx, "drained", lim, cost, 0)
	check("Take after a limit change", res, err)
	drained := time.Duration((cost*p.W+p.M-1)/p.M) * time.Microsecond
	if res.RetryAfter > drained {
		t.Fatalf("%+v cost %d: after a limit change RetryAfter %v, more than a drained bucket's %v", lim, cost, res.RetryAfter, drained)
	}
}
