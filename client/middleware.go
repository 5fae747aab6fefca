package client

import (
	"context"
	"errors"
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

// Route says how the middleware guards one outgoing call: the rate limit to
// take a token from (Key and Limit, optional) and the breaker to go through
// (Breaker, optional). The zero Route guards nothing: the call goes straight
// through (with the correlation id).
type Route struct {
	// Key is the rate-limit bucket; Limit its limit (required with Key).
	Key   string
	Limit Limit
	// Cost is the tokens the call takes (default 1).
	Cost int64
	// MaxWait is how long the call may wait for tokens (default 0: refuse
	// at once), never past the context's deadline.
	MaxWait time.Duration
	// Breaker is the circuit breaker's name.
	Breaker string
}

// MiddlewareOption configures UnaryClientInterceptor and RoundTripper.
type MiddlewareOption func(*middlewareOptions)

type middlewareOptions struct {
	httpRoute   func(*http.Request) Route
	grpcRoute   func(method string) Route
	httpFailure func(*http.Response, error) bool
	grpcFailure func(error) bool
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

func middlewareDefaults(opts []MiddlewareOption) middlewareOptions {
	o := middlewareOptions{
		httpRoute: func(r *http.Request) Route { return Route{Breaker: r.URL.Host} },
		grpcRoute: func(method string) Route {
			svc, _, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
			return Route{Breaker: svc}
		},
		httpFailure: DefaultHTTPFailure,
		grpcFailure: DefaultGRPCFailure,
	}
	for _, opt := range opts {
		opt(&o)
	}
	return o
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

// guard is the acquire -> call -> report logic shared by both middlewares.
type guard struct {
	c  *Client
	cd cooldowns
}

func newGuard(c *Client) *guard {
	return &guard{c: c, cd: cooldowns{until: make(map[string]time.Time)}}
}

func scopeOf(r Route) string {
	if r.Breaker != "" {
		return "b:" + r.Breaker
	}
	return "k:" + r.Key
}

// admit checks the route's cooldown, then acquires. done is nil when the
// route has no breaker (nothing to report).
func (g *guard) admit(ctx context.Context, r Route) (done func(error), err error) {
	if left := g.cd.left(scopeOf(r), g.c.o.now()); left > 0 {
		return nil, &RejectedError{Reason: ReasonUpstreamRetryAfter, Breaker: r.Breaker, Key: r.Key, RetryAfter: left}
	}
	if r.Breaker != "" {
		done, err := g.c.Allow(ctx, r.Breaker, WithRateLimit(r.Key, r.Limit), Cost(r.Cost), MaxWait(r.MaxWait))
		return done, g.withCooldown(r, err)
	}
	a, err := g.c.acquire(ctx, acquireReq{key: r.Key, limit: r.Limit, cost: r.Cost, maxWait: r.MaxWait})
	if err != nil {
		return nil, err
	}
	if !a.Allowed {
		return nil, &RejectedError{Reason: a.Reason, Key: r.Key, RetryAfter: a.RetryAfter, Local: a.Local}
	}
	return nil, nil
}

// withCooldown makes a breaker's rejection carry the upstream's retry-after
// when that is later.
func (g *guard) withCooldown(r Route, err error) error {
	var rej *RejectedError
	if errors.As(err, &rej) {
		if left := g.cd.left(scopeOf(r), g.c.o.now()); left > rej.RetryAfter {
			rej.RetryAfter = left
		}
	}
	return err
}

// observe remembers an upstream retry-after.
func (g *guard) observe(r Route, d time.Duration) {
	if d > 0 {
		g.cd.set(scopeOf(r), g.c.o.now().Add(d))
	}
}

// isResilienceMethod reports calls to the resilience service itself, which
// the interceptor must not guard (it would call itself).
func isResilienceMethod(method string) bool {
	return strings.HasPrefix(method, "/topdeck.resilience.v1.")
}

// UnaryClientInterceptor returns a gRPC interceptor that guards each outgoing
// unary call by its Route (WithGRPCRoute): acquire, call, report. A refused
// call returns a *RejectedError (ErrOpen or ErrRateLimited) without reaching
// the upstream; an upstream error carrying errdetails.RetryInfo holds later
// calls of the route back until then (ReasonUpstreamRetryAfter) and makes
// the breaker's rejections carry it. The caller's correlation id is added to
// the outgoing metadata. Calls to the resilience service itself pass
// through. Safe for concurrent use.
func (c *Client) UnaryClientInterceptor(opts ...MiddlewareOption) grpc.UnaryClientInterceptor {
	o := middlewareDefaults(opts)
	g := newGuard(c)
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, callOpts ...grpc.CallOption) error {
		if isResilienceMethod(method) {
			return invoker(ctx, method, req, reply, cc, callOpts...)
		}
		ctx = outgoing(ctx)
		r := o.grpcRoute(method)
		if r.Key == "" && r.Breaker == "" {
			return invoker(ctx, method, req, reply, cc, callOpts...)
		}
		done, err := g.admit(ctx, r)
		if err != nil {
			return err
		}
		err = invoker(ctx, method, req, reply, cc, callOpts...)
		if d, ok := retry.RetryAfter(err); ok {
			g.observe(r, d)
		}
		if done != nil {
			switch {
			case err == nil:
				done(nil)
			case status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled):
				done(context.Canceled)
			case o.grpcFailure(err):
				done(failure{err})
			default:
				done(nil) // the upstream answered: not a failure
			}
		}
		return err
	}
}

// failure marks an error the middleware's classifier counted as a failure,
// so the Client's classifier does not decide again.
type failure struct{ error }

func (f failure) Unwrap() error { return f.error }

// RoundTripper returns an http.RoundTripper that guards each request sent
// through next (http.DefaultTransport when nil) by its Route
// (WithHTTPRoute): acquire, send, report. A refused request returns a
// *RejectedError (ErrOpen or ErrRateLimited) without reaching the upstream.
// A response with a Retry-After (seconds or HTTP date) on a 429 or 503 holds
// later requests of the route back until then (ReasonUpstreamRetryAfter) and
// makes the breaker's rejections carry it; the response itself is returned
// unchanged. The caller's correlation id is sent in the x-correlation-id
// header unless the request has one. Safe for concurrent use.
func (c *Client) RoundTripper(next http.RoundTripper, opts ...MiddlewareOption) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &roundTripper{next: next, o: middlewareDefaults(opts), g: newGuard(c)}
}

type roundTripper struct {
	next http.RoundTripper
	o    middlewareOptions
	g    *guard
}

func (t *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if id := correlation.FromContext(ctx); id != "" && req.Header.Get(correlation.Header) == "" {
		req = req.Clone(ctx)
		req.Header.Set(correlation.Header, id)
	}
	r := t.o.httpRoute(req)
	if r.Key == "" && r.Breaker == "" {
		return t.next.RoundTrip(req)
	}
	done, err := t.g.admit(ctx, r)
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // a RoundTripper always closes the body
		}
		return nil, err
	}
	resp, err := t.next.RoundTrip(req)
	if err == nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if d, ok := retry.ParseRetryAfter(resp.Header.Get("Retry-After"), t.g.c.o.now()); ok {
			t.g.observe(r, d)
		}
	}
	if done != nil {
		switch {
		case err != nil && (errors.Is(err, context.Canceled) || ctx.Err() == context.Canceled):
			done(context.Canceled)
		case t.o.httpFailure(resp, err):
			if err == nil {
				done(failure{&retry.HTTPError{StatusCode: resp.StatusCode, Status: resp.Status}})
			} else {
				done(failure{err})
			}
		default:
			done(nil)
		}
	}
	return resp, err
}
