package client

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/topdeck/resilience/client/retry"
	"github.com/topdeck/resilience/correlation"
)

// Route says how the middleware guards one outgoing call: the limit to
// take a token (or a concurrency slot) from (Key and Limit, optional), more
// limits taken all or nothing with it (And), and the breaker to go through
// (Breaker, optional). The zero Route guards nothing: the call goes straight
// through (with the correlation id).
//
// What the upstream says of its limits (Retry-After, X-RateLimit-*, gRPC
// RetryInfo) is reported for Key, the limit the upstream's answer is
// about; And's limits (e.g. an organisation's, shared with other users)
// are not paused by it.
type Route struct {
	// Key is the limit's bucket; Limit its limit (required with Key).
	Key   string
	Limit Limit
	// And are more limits the call takes, all or nothing with Key's.
	And []KeyLimit
	// Cost is the tokens the call takes (default 1).
	Cost int64
	// MaxWait is how long the call may wait for tokens (default 0: refuse
	// at once), never past the context's deadline.
	MaxWait time.Duration
	// Breaker is the circuit breaker's name.
	Breaker string
}

// MiddlewareOption configures UnaryClientInterceptor,
// StreamClientInterceptor and RoundTripper. The defaults are copied for
// each middleware built.
type MiddlewareOption func(*middlewareOptions)

type middlewareOptions struct {
	httpRoute   func(*http.Request) Route
	grpcRoute   func(method string) Route
	httpFailure func(*http.Response, error) bool
	grpcFailure func(error) bool
	now         func() time.Time
}

// WithHTTPRoute maps an outgoing HTTP request to its Route (default: the
// breaker named after the request's host, no rate limit).
func WithHTTPRoute(f func(*http.Request) Route) MiddlewareOption {
	return func(o *middlewareOptions) { o.httpRoute = f }
}

// WithGRPCRoute maps an outgoing gRPC method ("/pkg.Service/Method") to its
// Route (default: the breaker named after the service, "pkg.Service", no
// rate limit).
func WithGRPCRoute(f func(method string) Route) MiddlewareOption {
	return func(o *middlewareOptions) { o.grpcRoute = f }
}

// WithHTTPFailure says which answers count as failures of the upstream
// (default DefaultHTTPFailure). A cancelled request never counts.
func WithHTTPFailure(f func(resp *http.Response, err error) bool) MiddlewareOption {
	return func(o *middlewareOptions) { o.httpFailure = f }
}

// WithGRPCFailure says which errors count as failures of the upstream
// (default DefaultGRPCFailure). A cancelled call never counts.
func WithGRPCFailure(f func(err error) bool) MiddlewareOption {
	return func(o *middlewareOptions) { o.grpcFailure = f }
}

// WithMiddlewareClock sets the clock of the upstream's cooldowns
// (Retry-After, RetryInfo), for tests (default time.Now; the Client's clock
// for the Client's own methods).
func WithMiddlewareClock(now func() time.Time) MiddlewareOption {
	return func(o *middlewareOptions) { o.now = now }
}

// DefaultHTTPFailure counts as failures a transport error and the statuses
// 5xx and 429.
func DefaultHTTPFailure(resp *http.Response, err error) bool {
	if err != nil {
		return true
	}
	return resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests
}

// DefaultGRPCFailure counts as failures the codes UNAVAILABLE and
// DEADLINE_EXCEEDED.
func DefaultGRPCFailure(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// guarded reports whether r guards anything.
func (r Route) guarded() bool { return r.Key != "" || r.Breaker != "" || len(r.And) > 0 }

func middlewareDefaults(opts []MiddlewareOption) middlewareOptions {
	o := middlewareOptions{
		httpRoute: func(r *http.Request) Route { return Route{Breaker: r.URL.Host} },
		grpcRoute: func(method string) Route {
			svc, _, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
			return Route{Breaker: svc}
		},
		httpFailure: DefaultHTTPFailure,
		grpcFailure: DefaultGRPCFailure,
		now:         time.Now,
	}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Guard admits one outgoing call of a Route and is told how it ended: the
// one method UnaryClientInterceptor, StreamClientInterceptor and
// RoundTripper need. *Client implements it (Client.Admit); a fake or
// another implementation can stand in for it.
type Guard interface {
	// Admit asks to make one call of r. It returns a *RejectedError when
	// the call must not go; otherwise done, to call exactly once when the
	// call has ended, with nil when the upstream answered (success or an
	// answer that is no failure), context.Canceled when it was cancelled,
	// or an error wrapping the upstream's when it failed.
	Admit(ctx context.Context, r Route) (done func(err error), err error)
}

// FeedbackGuard is a Guard that is also told what the upstream said of its
// own limits (Upstream, parsed from the answer by the middleware). The
// middleware uses AdmitFeedback when its Guard implements it, Admit
// otherwise. *Client implements it: it reports the Upstream for the
// route's Key (see Client.ReportUpstream) in the call's ReportOutcome.
type FeedbackGuard interface {
	Guard
	// AdmitFeedback is Admit, whose done also takes what the upstream
	// said (the zero Upstream when it said nothing).
	AdmitFeedback(ctx context.Context, r Route) (done func(err error, u Upstream), err error)
}

var _ FeedbackGuard = (*Client)(nil)

// Admit implements Guard: the route's breaker and limits in one decision
// (Allow), or its limits alone without a breaker. A route with neither is
// admitted without asking the service. done gives back the call's
// concurrency slots.
func (c *Client) Admit(ctx context.Context, r Route) (done func(err error), err error) {
	end, err := c.AdmitFeedback(ctx, r)
	if err != nil {
		return nil, err
	}
	return func(err error) { end(err, Upstream{}) }, nil
}

// AdmitFeedback implements FeedbackGuard: Admit, whose done also reports u
// for the route's Key (in the same ReportOutcome as the outcome and the
// release of the slots).
func (c *Client) AdmitFeedback(ctx context.Context, r Route) (done func(err error, u Upstream), err error) {
	if !r.guarded() {
		return func(error, Upstream) {}, nil
	}
	return c.admitCall(ctx, acquireReq{key: r.Key, limit: r.Limit, cost: r.Cost, more: r.And, maxWait: r.MaxWait, breaker: r.Breaker})
}

// cooldowns remembers, per route, until when the upstream asked not to be
// called (Retry-After, RetryInfo).
type cooldowns struct {
	mu    sync.Mutex // protects until
	until map[string]time.Time
}

func (cd *cooldowns) set(scope string, until time.Time) {
	cd.mu.Lock()
	defer cd.mu.Unlock()
	if until.After(cd.until[scope]) {
		cd.until[scope] = until
	}
}

// left returns how long scope is still cooling down (0 when not).
func (cd *cooldowns) left(scope string, now time.Time) time.Duration {
	cd.mu.Lock()
	defer cd.mu.Unlock()
	u, ok := cd.until[scope]
	if !ok {
		return 0
	}
	if !u.After(now) {
		delete(cd.until, scope)
		return 0
	}
	return u.Sub(now)
}

// middleware is the acquire -> call -> report logic shared by the
// interceptors and the RoundTripper: a Guard, the upstream's cooldowns and
// the options.
type middleware struct {
	g  Guard
	o  middlewareOptions
	cd cooldowns
}

func newMiddleware(g Guard, opts []MiddlewareOption) *middleware {
	return &middleware{g: g, o: middlewareDefaults(opts), cd: cooldowns{until: make(map[string]time.Time)}}
}

func scopeOf(r Route) string {
	if r.Breaker != "" {
		return "b:" + r.Breaker
	}
	return "k:" + r.Key
}

// admit checks the route's cooldown, then asks the Guard.
func (m *middleware) admit(ctx context.Context, r Route) (done func(error, Upstream), err error) {
	if left := m.cd.left(scopeOf(r), m.o.now()); left > 0 {
		return nil, &RejectedError{Reason: ReasonUpstreamRetryAfter, Breaker: r.Breaker, Key: r.Key, RetryAfter: left}
	}
	if fg, ok := m.g.(FeedbackGuard); ok {
		done, err = fg.AdmitFeedback(ctx, r)
	} else {
		var d func(error)
		if d, err = m.g.Admit(ctx, r); d != nil {
			done = func(err error, _ Upstream) { d(err) }
		}
	}
	var rej *RejectedError
	if r.Breaker != "" && errors.As(err, &rej) {
		// A breaker's rejection carries the upstream's retry-after when
		// that is later.
		if left := m.cd.left(scopeOf(r), m.o.now()); left > rej.RetryAfter {
			rej.RetryAfter = left
		}
	}
	return done, err
}

// observe remembers an upstream retry-after.
func (m *middleware) observe(r Route, d time.Duration) {
	if d > 0 {
		m.cd.set(scopeOf(r), m.o.now().Add(d))
	}
}

// endGRPC remembers the retry-after of a gRPC call's error and reports
// the call's outcome, with the upstream's RetryInfo, to done.
func (m *middleware) endGRPC(r Route, done func(error, Upstream), err error) {
	if d, ok := retry.RetryAfter(err); ok {
		m.observe(r, d)
	}
	u := UpstreamFromGRPC(err)
	switch {
	case err == nil:
		done(nil, u)
	case status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled):
		done(context.Canceled, u)
	case m.o.grpcFailure(err):
		done(failure{err}, u)
	default:
		done(nil, u) // the upstream answered: not a failure
	}
}

// endOnPanic ends a call whose invoker panicked (the panic goes on), so
// that its slots are given back; *ended says it ended normally.
func endOnPanic(ended *bool, done func(error, Upstream)) {
	if !*ended {
		done(context.Canceled, Upstream{})
	}
}

// isResilienceMethod reports calls to the resilience service itself, which
// the interceptor must not guard (it would call itself).
func isResilienceMethod(method string) bool {
	return strings.HasPrefix(method, "/topdeck.resilience.v1.")
}

// UnaryClientInterceptor returns a gRPC interceptor that guards each
// outgoing unary call by its Route (WithGRPCRoute) through g: admit, call,
// report (and give back the call's concurrency slots, even when the
// invoker panics). A refused call returns a *RejectedError (ErrOpen or
// ErrRateLimited) without reaching the upstream; an upstream error carrying
// errdetails.RetryInfo holds later calls of the route back until then
// (ReasonUpstreamRetryAfter) and makes the breaker's rejections carry it.
// When g is a FeedbackGuard (a *Client is), the RetryInfo of a
// RESOURCE_EXHAUSTED or UNAVAILABLE status (UpstreamFromGRPC) is reported
// for the route's Key, which pauses it fleet-wide.
// The caller's correlation id is added to the outgoing metadata. Calls to
// the resilience service itself pass through. Safe for concurrent use.
func UnaryClientInterceptor(g Guard, opts ...MiddlewareOption) grpc.UnaryClientInterceptor {
	m := newMiddleware(g, opts)
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, callOpts ...grpc.CallOption) error {
		if isResilienceMethod(method) {
			return invoker(ctx, method, req, reply, cc, callOpts...)
		}
		ctx = outgoing(ctx)
		r := m.o.grpcRoute(method)
		if !r.guarded() {
			return invoker(ctx, method, req, reply, cc, callOpts...)
		}
		done, err := m.admit(ctx, r)
		if err != nil {
			return err
		}
		ended := false
		defer endOnPanic(&ended, done)
		err = invoker(ctx, method, req, reply, cc, callOpts...)
		ended = true
		m.endGRPC(r, done, err)
		return err
	}
}

// StreamClientInterceptor returns a gRPC interceptor that guards each
// outgoing stream by its Route (WithGRPCRoute) through g, as
// UnaryClientInterceptor guards unary calls: the stream is admitted before
// it opens, and its outcome is reported once it ends: when it cannot open,
// when RecvMsg returns an error (io.EOF is a success) or, for a stream with
// a single response, once that response came; a stream whose context ends
// first is reported as cancelled. Its concurrency slots are held until
// then. Safe for concurrent use.
func StreamClientInterceptor(g Guard, opts ...MiddlewareOption) grpc.StreamClientInterceptor {
	m := newMiddleware(g, opts)
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, callOpts ...grpc.CallOption) (grpc.ClientStream, error) {
		if isResilienceMethod(method) {
			return streamer(ctx, desc, cc, method, callOpts...)
		}
		ctx = outgoing(ctx)
		r := m.o.grpcRoute(method)
		if !r.guarded() {
			return streamer(ctx, desc, cc, method, callOpts...)
		}
		done, err := m.admit(ctx, r)
		if err != nil {
			return nil, err
		}
		ended := false
		defer endOnPanic(&ended, done)
		cs, err := streamer(ctx, desc, cc, method, callOpts...)
		ended = true
		if err != nil {
			m.endGRPC(r, done, err)
			return nil, err
		}
		s := &guardedStream{ClientStream: cs, serverStreams: desc.ServerStreams}
		s.end = func(err error) {
			s.once.Do(func() {
				s.stop()
				m.endGRPC(r, done, err)
			})
		}
		s.stop = context.AfterFunc(ctx, func() { s.end(context.Canceled) })
		return s, nil
	}
}

// guardedStream reports its outcome once it has ended (see
// StreamClientInterceptor).
type guardedStream struct {
	grpc.ClientStream
	serverStreams bool
	once          sync.Once
	end           func(err error) // reports once
	stop          func() bool     // stops the report on the context's end
}

func (s *guardedStream) RecvMsg(msg any) error {
	err := s.ClientStream.RecvMsg(msg)
	switch {
	case errors.Is(err, io.EOF):
		s.end(nil)
	case err != nil:
		s.end(err)
	case !s.serverStreams:
		s.end(nil) // the single response came: the call is over
	}
	return err
}

// UnaryClientInterceptor is UnaryClientInterceptor(c, opts...), with c's
// clock for the upstream's cooldowns.
func (c *Client) UnaryClientInterceptor(opts ...MiddlewareOption) grpc.UnaryClientInterceptor {
	return UnaryClientInterceptor(c, c.middlewareOptions(opts)...)
}

// StreamClientInterceptor is StreamClientInterceptor(c, opts...), with c's
// clock for the upstream's cooldowns.
func (c *Client) StreamClientInterceptor(opts ...MiddlewareOption) grpc.StreamClientInterceptor {
	return StreamClientInterceptor(c, c.middlewareOptions(opts)...)
}

// middlewareOptions puts c's clock before opts.
func (c *Client) middlewareOptions(opts []MiddlewareOption) []MiddlewareOption {
	return append([]MiddlewareOption{WithMiddlewareClock(c.o.now)}, opts...)
}

// failure marks an error the middleware's classifier counted as a failure,
// so the Client's classifier does not decide again.
type failure struct{ error }

func (f failure) Unwrap() error { return f.error }

// RoundTripper returns an http.RoundTripper that guards each request sent
// through next (http.DefaultTransport when nil) by its Route
// (WithHTTPRoute) through g: admit, send, report. A refused request returns
// a *RejectedError (ErrOpen or ErrRateLimited) without reaching the
// upstream. A response with a Retry-After (seconds or HTTP date) on a 429
// or 503, or with X-RateLimit-Remaining 0 and an X-RateLimit-Reset, holds
// later requests of the route back until then (ReasonUpstreamRetryAfter)
// and makes the breaker's rejections carry it; the response itself is
// returned unchanged. When g is a FeedbackGuard (a *Client is), what the
// response says of the upstream's limits (UpstreamFromHTTP: Retry-After on
// a 429 or 503, X-RateLimit-Remaining and X-RateLimit-Reset on any
// answer) is reported for the route's Key: the service pauses the key
// fleet-wide and lowers its bucket, so that every caller of it backs off.
// The call's concurrency slots are given back once the response headers
// came (the body is the caller's), or when next fails or panics. The
// caller's correlation id is sent in the x-correlation-id header unless
// the request has one. Safe for concurrent use.
func RoundTripper(g Guard, next http.RoundTripper, opts ...MiddlewareOption) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &roundTripper{next: next, m: newMiddleware(g, opts)}
}

// RoundTripper is RoundTripper(c, next, opts...) with c's clock for the
// upstream's cooldowns.
func (c *Client) RoundTripper(next http.RoundTripper, opts ...MiddlewareOption) http.RoundTripper {
	return RoundTripper(c, next, c.middlewareOptions(opts)...)
}

type roundTripper struct {
	next http.RoundTripper
	m    *middleware
}

func (t *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if id := correlation.FromContext(ctx); id != "" && req.Header.Get(correlation.Header) == "" {
		req = req.Clone(ctx)
		req.Header.Set(correlation.Header, id)
	}
	r := t.m.o.httpRoute(req)
	if !r.guarded() {
		return t.next.RoundTrip(req)
	}
	done, err := t.m.admit(ctx, r)
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // a RoundTripper always closes the body
		}
		return nil, err
	}
	ended := false
	defer endOnPanic(&ended, done)
	resp, err := t.next.RoundTrip(req)
	ended = true
	var u Upstream
	if err == nil {
		u = UpstreamFromHTTP(resp.StatusCode, resp.Header, t.m.o.now())
		t.m.observe(r, u.Pause())
	}
	switch {
	case err != nil && (errors.Is(err, context.Canceled) || ctx.Err() == context.Canceled):
		done(context.Canceled, u)
	case t.m.o.httpFailure(resp, err):
		if err == nil {
			done(failure{&retry.HTTPError{StatusCode: resp.StatusCode, Status: resp.Status, Delay: u.RetryAfter}}, u)
		} else {
			done(failure{err}, u)
		}
	default:
		done(nil, u)
	}
	return resp, err
}
