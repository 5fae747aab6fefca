package client_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/topdeck/resilience/client"
)

// upstreamNow is the clock of the parser tests: 2025-01-01T00:00:00Z.
var upstreamNow = time.Unix(1735689600, 0).UTC()

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestUpstreamFromHTTP(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		h      http.Header
		want   client.Upstream
	}{
		{"nothing", 200, header(), client.Upstream{}},
		{"429 retry-after seconds", 429, header("Retry-After", "120"), client.Upstream{RetryAfter: 2 * time.Minute}},
		{"503 retry-after date", 503, header("Retry-After", "Wed, 01 Jan 2025 00:00:30 GMT"), client.Upstream{RetryAfter: 30 * time.Second}},
		{"retry-after date in the past", 429, header("Retry-After", "Tue, 31 Dec 2024 23:00:00 GMT"), client.Upstream{}},
		{"retry-after ignored on a 200", 200, header("Retry-After", "120"), client.Upstream{}},
		{"retry-after ignored on a 500", 500, header("Retry-After", "120"), client.Upstream{}},
		{"retry-after malformed", 429, header("Retry-After", "soon"), client.Upstream{}},
		{"retry-after negative", 429, header("Retry-After", "-5"), client.Upstream{}},
		{"retry-after absurd", 429, header("Retry-After", "99999999999"), client.Upstream{RetryAfter: client.MaxUpstreamDelay}},
		{"remaining on a 200", 200, header("X-RateLimit-Remaining", "42"), client.Upstream{Remaining: 42, HasRemaining: true}},
		{"remaining 0 with a reset delay", 200, header("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "30"),
			client.Upstream{HasRemaining: true, ResetAfter: 30 * time.Second}},
		{"reset as epoch seconds", 200, header("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "1735689645"),
			client.Upstream{HasRemaining: true, ResetAfter: 45 * time.Second}},
		{"reset as epoch seconds with a fraction", 200, header("X-RateLimit-Reset", "1735689601.5"),
			client.Upstream{ResetAfter: 1500 * time.Millisecond}},
		{"reset epoch in the past", 200, header("X-RateLimit-Reset", "1735689000"), client.Upstream{}},
		{"reset as fractional seconds", 200, header("X-RateLimit-Reset", "0.25"), client.Upstream{ResetAfter: 250 * time.Millisecond}},
		{"reset in milliseconds is ignored", 200, header("X-RateLimit-Reset", "1735689645000"), client.Upstream{}},
		{"reset just below the epoch bound is a delay (cut)", 200, header("X-RateLimit-Reset", "999999999"), client.Upstream{ResetAfter: client.MaxUpstreamDelay}},
		{"reset malformed", 200, header("X-RateLimit-Reset", "NaN"), client.Upstream{}},
		{"reset negative", 200, header("X-RateLimit-Reset", "-1"), client.Upstream{}},
		{"remaining malformed", 200, header("X-RateLimit-Remaining", "lots"), client.Upstream{}},
		{"remaining negative", 200, header("X-RateLimit-Remaining", "-3"), client.Upstream{}},
		{"remaining list takes the smallest", 200, header("X-RateLimit-Remaining", "10, 3;w=60", "X-RateLimit-Remaining", "7"),
			client.Upstream{Remaining: 3, HasRemaining: true}},
		{"IETF draft names", 200, header("RateLimit-Remaining", "5", "RateLimit-Reset", "12"),
			client.Upstream{Remaining: 5, HasRemaining: true, ResetAfter: 12 * time.Second}},
		{"X- names win", 200, header("X-RateLimit-Remaining", "1", "RateLimit-Remaining", "5"), client.Upstream{Remaining: 1, HasRemaining: true}},
		{"azure devops 429", 429, header("Retry-After", "10", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "1735689660"),
			client.Upstream{RetryAfter: 10 * time.Second, HasRemaining: true, ResetAfter: time.Minute}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := client.UpstreamFromHTTP(tc.status, tc.h, upstreamNow); got != tc.want {
				t.Errorf("UpstreamFromHTTP(%d, %v): got %+v, want %+v", tc.status, tc.h, got, tc.want)
			}
		})
	}
}

func TestUpstreamPause(t *testing.T) {
	for _, tc := range []struct {
		u    client.Upstream
		want time.Duration
	}{
		{client.Upstream{}, 0},
		{client.Upstream{RetryAfter: time.Second}, time.Second},
		{client.Upstream{RetryAfter: time.Second, HasRemaining: true, ResetAfter: time.Minute}, time.Minute},
		{client.Upstream{RetryAfter: time.Second, Remaining: 1, HasRemaining: true, ResetAfter: time.Minute}, time.Second},
		{client.Upstream{ResetAfter: time.Minute}, 0}, // remaining unknown: the reset is no pause
	} {
		if got := tc.u.Pause(); got != tc.want {
			t.Errorf("%+v.Pause(): got %v, want %v", tc.u, got, tc.want)
		}
	}
}

func retryInfoErr(t *testing.T, code codes.Code, d time.Duration) error {
	t.Helper()
	st, err := status.New(code, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

func TestUpstreamFromGRPC(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want client.Upstream
	}{
		{"nil", nil, client.Upstream{}},
		{"not a status", errors.New("boom"), client.Upstream{}},
		{"resource exhausted", retryInfoErr(t, codes.ResourceExhausted, 3*time.Second), client.Upstream{RetryAfter: 3 * time.Second}},
		{"unavailable, wrapped", fmt.Errorf("calling: %w", retryInfoErr(t, codes.Unavailable, time.Second)), client.Upstream{RetryAfter: time.Second}},
		{"other code", retryInfoErr(t, codes.Internal, time.Second), client.Upstream{}},
		{"no retry info", status.Error(codes.ResourceExhausted, "no"), client.Upstream{}},
		{"absurd delay", retryInfoErr(t, codes.ResourceExhausted, 1000*time.Hour), client.Upstream{RetryAfter: client.MaxUpstreamDelay}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := client.UpstreamFromGRPC(tc.err); got != tc.want {
				t.Errorf("UpstreamFromGRPC(%v): got %+v, want %+v", tc.err, got, tc.want)
			}
		})
	}
}

// FuzzUpstreamFromHTTP checks that no header makes the parser panic or
// answer out of its bounds. The seed corpus is in testdata/fuzz.
func FuzzUpstreamFromHTTP(f *testing.F) {
	f.Add(429, "120", "0", "1735689645")
	f.Add(503, "Wed, 01 Jan 2025 00:00:30 GMT", "", "")
	f.Add(200, "", "10, 3;w=60", "0.25")
	f.Fuzz(func(t *testing.T, status int, retryAfter, remaining, reset string) {
		h := header("Retry-After", retryAfter, "X-RateLimit-Remaining", remaining, "X-RateLimit-Reset", reset)
		u := client.UpstreamFromHTTP(status, h, upstreamNow)
		if u.RetryAfter < 0 || u.RetryAfter > client.MaxUpstreamDelay || u.ResetAfter < 0 || u.ResetAfter > client.MaxUpstreamDelay {
			t.Fatalf("durations out of [0, %v]: %+v", client.MaxUpstreamDelay, u)
		}
		if u.Remaining < 0 || (!u.HasRemaining && u.Remaining != 0) {
			t.Fatalf("remaining: %+v", u)
		}
		if status != 429 && status != 503 && u.RetryAfter != 0 {
			t.Fatalf("Retry-After read on a %d: %+v", status, u)
		}
		if p := u.Pause(); p < 0 || p > client.MaxUpstreamDelay {
			t.Fatalf("Pause() = %v out of bounds for %+v", p, u)
		}
		if again := client.UpstreamFromHTTP(status, h, upstreamNow); again != u {
			t.Fatalf("not deterministic: %+v then %+v", u, again)
		}
	})
}
