package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/topdeck/resilience/client/retry"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/limiter"
)

// Upstream is what an upstream said about its own limits in one answer: a
// 429's or 503's Retry-After, its X-RateLimit-Remaining and
// X-RateLimit-Reset, or a gRPC RetryInfo. Reported for a limit key
// (Client.ReportUpstream, or the middleware without caller code), it makes
// the service pause that key fleet-wide and lower its bucket: one
// instance's 429 becomes the whole fleet backing off at once.
//
// The zero value says nothing. An Upstream is a plain value.
type Upstream struct {
	// RetryAfter is how long the upstream asked not to be called (0: it
	// did not say).
	RetryAfter time.Duration
	// Remaining is the upstream's remaining quota, when HasRemaining.
	Remaining    int64
	HasRemaining bool
	// ResetAfter is how long until the upstream's quota is reset (0:
	// unknown). With Remaining 0 it is a pause, as RetryAfter is.
	ResetAfter time.Duration
}

// IsZero reports whether u says nothing.
func (u Upstream) IsZero() bool { return u == Upstream{} }

// Pause is how long u asks the key to be left alone: the longer of
// RetryAfter and, when Remaining is 0, ResetAfter.
func (u Upstream) Pause() time.Duration {
	d := u.RetryAfter
	if u.HasRemaining && u.Remaining == 0 && u.ResetAfter > d {
		d = u.ResetAfter
	}
	return d
}

// MaxUpstreamDelay bounds every duration parsed from an upstream's answer
// (a day), so that an absurd header cannot overflow a duration. The
// service pauses a key for at most 15 minutes whatever was reported.
const MaxUpstreamDelay = 24 * time.Hour

// epochSecondsFrom is the smallest X-RateLimit-Reset read as a Unix time:
// 1e9 seconds is September 2001, and a delay that long (31 years) is no
// delay anyone sends.
const epochSecondsFrom = 1e9

// epochSecondsTo bounds X-RateLimit-Reset values read as a Unix time (the
// year 5138): larger values (milliseconds since the epoch, garbage) are
// ignored.
const epochSecondsTo = 1e11

// UpstreamFromHTTP reads what an HTTP answer with status code status and
// header h says about the upstream's limits, relative to now. It is a pure
// function (the RoundTripper's parser):
//
//   - Retry-After, on a 429 or 503 only: whole seconds ("120") or an HTTP
//     date ("Wed, 21 Oct 2015 07:28:00 GMT"; a past date gives 0).
//   - X-RateLimit-Remaining (or RateLimit-Remaining), on any status: a
//     whole number of calls left; with several values (repeated headers or
//     a comma-separated list) the smallest.
//   - X-RateLimit-Reset (or RateLimit-Reset), on any status: the time
//     until the quota is reset, as seconds (fractions allowed) told apart
//     by magnitude: a value below 1e9 is a delay in seconds ("30",
//     RateLimit-Reset of the IETF draft); from 1e9 (September 2001) to
//     1e11 it is a Unix time in seconds ("1735689600", as GitHub and Azure
//     DevOps send), read relative to now; larger values are ignored.
//
// Malformed or negative values are ignored, and every duration is cut to
// MaxUpstreamDelay.
func UpstreamFromHTTP(status int, h http.Header, now time.Time) Upstream {
	var u Upstream
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		if d, ok := retry.ParseRetryAfter(h.Get("Retry-After"), now); ok {
			u.RetryAfter = min(d, MaxUpstreamDelay)
		}
	}
	if n, ok := parseRemaining(headerValues(h, "X-RateLimit-Remaining", "RateLimit-Remaining")); ok {
		u.Remaining, u.HasRemaining = n, true
	}
	if d, ok := parseReset(headerValue(h, "X-RateLimit-Reset", "RateLimit-Reset"), now); ok {
		u.ResetAfter = d
	}
	return u
}

// headerValues are the values of the first of names that h has.
func headerValues(h http.Header, names ...string) []string {
	for _, n := range names {
		if vs := h.Values(n); len(vs) > 0 {
			return vs
		}
	}
	return nil
}

// headerValue is the first value of the first of names that h has.
func headerValue(h http.Header, names ...string) string {
	if vs := headerValues(h, names...); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// parseRemaining is the smallest whole number >= 0 in values (each a
// comma-separated list).
func parseRemaining(values []string) (int64, bool) {
	best, found := int64(0), false
	for _, v := range values {
		for _, f := range strings.Split(v, ",") {
			// A structured-field parameter (`10;w=60`) follows a semicolon.
			f, _, _ = strings.Cut(f, ";")
			n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
			if err != nil || n < 0 {
				continue
			}
			if !found || n < best {
				best, found = n, true
			}
		}
	}
	return best, found
}

// parseReset reads an X-RateLimit-Reset value (see UpstreamFromHTTP).
func parseReset(v string, now time.Time) (time.Duration, bool) {
	v, _, _ = strings.Cut(v, ",")
	v, _, _ = strings.Cut(v, ";")
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f >= epochSecondsTo {
		return 0, false
	}
	var d time.Duration
	if f >= epochSecondsFrom {
		sec, frac := math.Modf(f)
		d = time.Unix(int64(sec), int64(frac*1e9)).Sub(now)
	} else {
		d = time.Duration(f * float64(time.Second))
	}
	return min(max(d, 0), MaxUpstreamDelay), true
}

// UpstreamFromGRPC reads the retry delay of an upstream's gRPC error: the
// errdetails.RetryInfo of a RESOURCE_EXHAUSTED or UNAVAILABLE status (cut
// to MaxUpstreamDelay); the zero Upstream for any other error.
func UpstreamFromGRPC(err error) Upstream {
	var se interface{ GRPCStatus() *status.Status }
	if err == nil || !errors.As(err, &se) {
		return Upstream{}
	}
	st := se.GRPCStatus()
	if c := st.Code(); c != codes.ResourceExhausted && c != codes.Unavailable {
		return Upstream{}
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			if d := ri.GetRetryDelay().AsDuration(); d > 0 {
				return Upstream{RetryAfter: min(d, MaxUpstreamDelay)}
			}
		}
	}
	return Upstream{}
}

// feedbackOf is u as the API carries it for key under lim; nil when there
// is nothing to report. A remaining quota above 0 is dropped for a
// concurrency limit alone (no bucket to lower).
func feedbackOf(key string, lim Limit, u Upstream) *resiliencev1.UpstreamFeedback {
	if key == "" || lim == nil || u.IsZero() {
		return nil
	}
	fb := &resiliencev1.UpstreamFeedback{Key: key}
	if u.RetryAfter > 0 {
		fb.RetryAfter = durationpb.New(u.RetryAfter)
	}
	if u.HasRemaining && (u.Remaining == 0 || lim.hasRate()) {
		n := u.Remaining
		fb.Remaining = &n
		if u.ResetAfter > 0 {
			fb.ResetAfter = durationpb.New(u.ResetAfter)
		}
		if n > 0 {
			fb.Limit, fb.Policy = lim.proto()
		}
	}
	if fb.RetryAfter == nil && fb.Remaining == nil {
		return nil
	}
	return fb
}

// localFeedback is u as the local limiter takes it under lim.
func (c *Client) localFeedback(lim Limit, u Upstream) limiter.Feedback {
	fb := limiter.Feedback{RetryAfter: min(u.RetryAfter, limiter.MaxPause)}
	if u.HasRemaining {
		l, _, ok := lim.local(c)
		if u.Remaining == 0 || (ok && l.HasRate()) {
			fb.Remaining, fb.HasRemaining, fb.ResetAfter = u.Remaining, true, min(u.ResetAfter, limiter.MaxPause)
			if ok && l.HasRate() {
				fb.Limit = l
			}
		}
	}
	return fb
}

// pauseLocally records u for key in the local limiter, so that local
// decisions (the service unreachable) honour it too. Best effort.
func (c *Client) pauseLocally(ctx context.Context, key string, lim Limit, u Upstream) {
	if key == "" || lim == nil || u.IsZero() {
		return
	}
	_, _ = c.lim.Pause(ctx, key, c.localFeedback(lim, u), limiter.AllowLocal)
}

// UpstreamResult is what the service did with a report of an Upstream.
type UpstreamResult struct {
	// PausedFor is how long the key is paused from now (0: not paused);
	// longer than reported when an earlier report paused it for longer.
	PausedFor time.Duration
	// Clamped reports that the pause was cut to the service's maximum (15
	// minutes).
	Clamped bool
	// Remaining is the bucket's whole tokens after the report, when it
	// gave a remaining quota.
	Remaining int64
	// Degraded and Local are as in Decision: the report holds for one
	// replica, or for this process only (the service was unreachable).
	Degraded, Local bool
}

// ReportUpstream tells the fleet what an upstream answered to a call made
// under the limit lim of key (what the middleware does without caller
// code; see UpstreamFromHTTP and UpstreamFromGRPC): the service pauses key
// fleet-wide for u.Pause() (at most 15 minutes), so that every Acquire on
// it is refused with ReasonUpstreamThrottled until then, and lowers its
// bucket to u.Remaining tokens (never raises it). When the service cannot
// be reached the report is recorded in the local limiter (Local). A zero u
// reports nothing. Errors: ErrInvalidArgument, the context's, a gRPC status
// from the service, or ErrServiceUnavailable under WithFailClosed.
func (c *Client) ReportUpstream(ctx context.Context, key string, lim Limit, u Upstream) (UpstreamResult, error) {
	if key == "" || lim == nil {
		return UpstreamResult{}, fmt.Errorf("%w: ReportUpstream needs a key and its limit", ErrInvalidArgument)
	}
	fb := feedbackOf(key, lim, u)
	if fb == nil {
		return UpstreamResult{}, nil
	}
	resp, err := invokeFor(ctx, c, 0, c.rs.ReportUpstream, &resiliencev1.ReportUpstreamRequest{Feedback: []*resiliencev1.UpstreamFeedback{fb}})
	if err != nil {
		if !c.local(err) {
			return UpstreamResult{}, err
		}
		res, err := c.lim.Pause(ctx, key, c.localFeedback(lim, u), limiter.AllowLocal)
		if err != nil {
			return UpstreamResult{}, localError(err)
		}
		return UpstreamResult{PausedFor: res.PausedFor, Clamped: res.Clamped, Remaining: res.Remaining, Degraded: true, Local: true}, nil
	}
	c.pauseLocally(ctx, key, lim, u)
	var r *resiliencev1.UpstreamResult
	if rs := resp.GetResults(); len(rs) > 0 {
		r = rs[0]
	}
	return UpstreamResult{
		PausedFor: r.GetPausedFor().AsDuration(),
		Clamped:   r.GetClamped(),
		Remaining: r.GetRemaining(),
		Degraded:  r.GetDegraded(),
	}, nil
}

// Release gives back the concurrency slots an admitted Decision holds (see
// Decision.HoldsSlots), on the service or, for a local decision, in the
// local limiter, and returns how many it gave back: 0 when they were
// released already or their lease ended, or when d holds none. Do, Call,
// Allow's done and the middleware release their slots themselves; Release
// is for the slots Check and Wait take. It is bounded by the call timeout
// and goes even when ctx has ended (the call has ended). Errors: a gRPC
// status from the service, or one matching ErrServiceUnavailable (the
// slots are then reclaimed when their lease ends).
func (c *Client) Release(ctx context.Context, d Decision) (int64, error) {
	ctx = context.WithoutCancel(ctx)
	if s := d.localSlots; s != nil {
		return c.lim.ReleaseSlots(ctx, s.keys, s.id, false)
	}
	if d.SlotToken == "" {
		return 0, nil
	}
	resp, err := invokeFor(ctx, c, 0, c.rs.Release, &resiliencev1.ReleaseRequest{SlotToken: d.SlotToken})
	return resp.GetReleased(), err
}
