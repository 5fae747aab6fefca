package retry_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/topdeck/resilience/client/retry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock advances by every duration it is asked to wait, at once, and
// records the waits.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// maxRand always picks the top of the jitter range.
type maxRand struct{}

func (maxRand) Int64N(n int64) int64 { return n - 1 }

// zeroRand always picks 0.
type zeroRand struct{}

func (zeroRand) Int64N(int64) int64 { return 0 }

// failing returns fn that fails with errs in turn (nil once they run out) and
// a counter of its calls.
func failing(errs ...error) (func(context.Context) error, *int) {
	n := 0
	return func(context.Context) error {
		n++
		if n <= len(errs) {
			return errs[n-1]
		}
		return nil
	}, &n
}

var errBoom = errors.New("boom")

func TestBackoffTiming(t *testing.T) {
	clk := newFakeClock()
	cfg := retry.Config{
		MaxAttempts:  6,
		InitialDelay: 100 * time.Millisecond,
		MaxDelay:     time.Second,
		Multiplier:   3,
		Clock:        clk,
		Rand:         maxRand{},
	}
	fn, calls := failing(errBoom, errBoom, errBoom, errBoom, errBoom, errBoom)
	err := retry.Do(context.Background(), cfg, fn)
	if !errors.Is(err, errBoom) {
		t.Fatalf("Do: got %v, want errBoom", err)
	}
	if *calls != 6 {
		t.Errorf("calls: got %d, want 6", *calls)
	}
	// Full jitter at the top of the range is the cap itself: 100ms, 300ms,
	// 900ms, then MaxDelay.
	want := []time.Duration{100 * time.Millisecond, 300 * time.Millisecond, 900 * time.Millisecond, time.Second, time.Second}
	if got := clk.Sleeps(); !slices.Equal(got, want) {
		t.Errorf("sleeps: got %v, want %v", got, want)
	}
}

func TestFullJitterRange(t *testing.T) {
	clk := newFakeClock()
	cfg := retry.Config{MaxAttempts: 3, Clock: clk, Rand: zeroRand{}}
	fn, _ := failing(errBoom, errBoom, errBoom)
	_ = retry.Do(context.Background(), cfg, fn)
	// A zero delay does not wait on the clock at all.
	if got := clk.Sleeps(); len(got) != 0 {
		t.Errorf("sleeps with zero jitter: got %v, want none", got)
	}
}

func TestSucceedsAfterFailures(t *testing.T) {
	clk := newFakeClock()
	fn, calls := failing(errBoom, errBoom)
	if err := retry.Do(context.Background(), retry.Config{MaxAttempts: 5, Clock: clk, Rand: maxRand{}}, fn); err != nil {
		t.Fatalf("Do: got %v, want nil", err)
	}
	if *calls != 3 {
		t.Errorf("calls: got %d, want 3", *calls)
	}
}

func TestHonoursServerRetryAfter(t *testing.T) {
	st, err := status.New(codes.Unavailable, "busy").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(7 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		err  error
		want time.Duration
	}{
		{"grpc RetryInfo", st.Err(), 7 * time.Second},
		{"RetryAfter method", retry.WithRetryAfter(errBoom, 3*time.Second), 3 * time.Second},
		{"wrapped RetryAfter", errors.Join(errors.New("ctx"), retry.WithRetryAfter(errBoom, 2*time.Second)), 2 * time.Second},
		{"http 429", retry.ResponseError(&http.Response{StatusCode: 429, Header: http.Header{"Retry-After": {"5"}}}, time.Now()), 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			fn, _ := failing(tt.err)
			cfg := retry.Config{MaxAttempts: 2, InitialDelay: time.Millisecond, Clock: clk, Rand: maxRand{}}
			if err := retry.Do(context.Background(), cfg, fn); err != nil {
				t.Fatalf("Do: got %v, want nil", err)
			}
			if got := clk.Sleeps(); len(got) != 1 || got[0] != tt.want {
				t.Errorf("sleeps: got %v, want [%v]", got, tt.want)
			}
		})
	}
}

func TestNeverSleepsPastDeadline(t *testing.T) {
	clk := newFakeClock()
	// The context's deadline is measured against the fake clock's now.
	ctx, cancel := context.WithDeadline(context.Background(), clk.Now().Add(time.Second))
	defer cancel()
	fn, calls := failing(retry.WithRetryAfter(errBoom, 5*time.Second))
	err := retry.Do(ctx, retry.Config{MaxAttempts: 5, Clock: clk, Rand: maxRand{}}, fn)
	if !errors.Is(err, errBoom) {
		t.Fatalf("Do: got %v, want errBoom", err)
	}
	if *calls != 1 {
		t.Errorf("calls: got %d, want 1", *calls)
	}
	if got := clk.Sleeps(); len(got) != 0 {
		t.Errorf("sleeps: got %v, want none", got)
	}
}

func TestPermanentStops(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"Permanent", retry.Permanent(errBoom), errBoom},
		{"InvalidArgument", status.Error(codes.InvalidArgument, "bad"), nil},
		{"NotFound", status.Error(codes.NotFound, "x"), nil},
		{"PermissionDenied", status.Error(codes.PermissionDenied, "x"), nil},
		{"Unauthenticated", status.Error(codes.Unauthenticated, "x"), nil},
		{"FailedPrecondition", status.Error(codes.FailedPrecondition, "x"), nil},
		{"http 404", retry.ResponseError(&http.Response{StatusCode: 404}, time.Now()), nil},
		{"canceled", context.Canceled, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			fn, calls := failing(tt.err, tt.err, tt.err)
			err := retry.Do(context.Background(), retry.Config{MaxAttempts: 3, Clock: clk, Rand: maxRand{}}, fn)
			if err == nil {
				t.Fatal("Do: got nil, want an error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Do: got %v, want %v", err, tt.want)
			}
			if retry.IsPermanent(err) {
				t.Errorf("Do returned the Permanent wrapper %v, want the error inside", err)
			}
			if *calls != 1 {
				t.Errorf("calls: got %d, want 1", *calls)
			}
		})
	}
}

func TestRetryableCodes(t *testing.T) {
	for _, c := range []codes.Code{codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Internal} {
		if !retry.DefaultRetryable(status.Error(c, "x")) {
			t.Errorf("DefaultRetryable(%v): got false, want true", c)
		}
	}
}

func TestContextCancelledDuringSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	blocked := blockingClock{started: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		done <- retry.Do(ctx, retry.Config{MaxAttempts: 3, Clock: blocked, Rand: maxRand{}}, func(context.Context) error { return errBoom })
	}()
	<-blocked.started
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) || !errors.Is(err, errBoom) {
		t.Errorf("Do: got %v, want an error matching context.Canceled and errBoom", err)
	}
}

// blockingClock never fires.
type blockingClock struct{ started chan struct{} }

func (blockingClock) Now() time.Time { return time.Now() }
func (c blockingClock) After(time.Duration) <-chan time.Time {
	close(c.started)
	return nil
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"120", 120 * time.Second, true},
		{"0", 0, true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"", 0, false},
		{"-3", 0, false},
		{"soon", 0, false},
		{"99999999999999", 24 * time.Hour, true},
	}
	for _, tt := range tests {
		got, ok := retry.ParseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("ParseRetryAfter(%q): got %v, %v, want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestResponseError(t *testing.T) {
	tests := []struct {
		code          int
		wantErr       bool
		wantPermanent bool
	}{
		{200, false, false},
		{302, false, false},
		{400, true, true},
		{404, true, true},
		{408, true, false},
		{429, true, false},
		{500, true, false},
		{503, true, false},
	}
	for _, tt := range tests {
		err := retry.ResponseError(&http.Response{StatusCode: tt.code, Header: http.Header{}}, time.Now())
		if (err != nil) != tt.wantErr || retry.IsPermanent(err) != tt.wantPermanent {
			t.Errorf("ResponseError(%d): got %v (permanent %v), want error %v permanent %v", tt.code, err, retry.IsPermanent(err), tt.wantErr, tt.wantPermanent)
		}
	}
}

func TestUnlimitedAttemptsEndWithDeadline(t *testing.T) {
	clk := newFakeClock()
	ctx, cancel := context.WithDeadline(context.Background(), clk.Now().Add(10*time.Second))
	defer cancel()
	fn, calls := failing(repeat(errBoom, 1000)...)
	err := retry.Do(ctx, retry.Config{MaxAttempts: -1, InitialDelay: time.Second, MaxDelay: time.Second, Clock: clk, Rand: maxRand{}}, fn)
	if !errors.Is(err, errBoom) {
		t.Fatalf("Do: got %v, want errBoom", err)
	}
	if *calls != 11 {
		t.Errorf("calls: got %d, want 11 (one at t=0 and one per second until the deadline)", *calls)
	}
}

func repeat(err error, n int) []error {
	out := make([]error, n)
	for i := range out {
		out[i] = err
	}
	return out
}
