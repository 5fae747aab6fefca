package client

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/topdeck/resilience/admission"
	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/correlation"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/limiter"
)

// Defaults of the options of New.
const (
	// DefaultCallTimeout bounds each call to the resilience service (beyond
	// the time the caller asked to wait for tokens), so that a hung service
	// degrades quickly.
	DefaultCallTimeout = 250 * time.Millisecond
	// DefaultServiceRetryInterval is how long the Client decides locally
	// after finding the service unreachable before it asks it again.
	DefaultServiceRetryInterval = time.Second
)

// Client is the Go SDK of the resilience service: rate limits (Check, Wait),
// circuit breakers (Do, Call, Allow), the shared cache (Cache) and, as a
// Guard, middleware for outgoing gRPC and HTTP calls
// (UnaryClientInterceptor, StreamClientInterceptor, RoundTripper).
//
// Every call to the service carries the caller's correlation id (from
// correlation.FromContext) as x-correlation-id metadata and is bounded by
// the call timeout. When the service cannot be reached (UNAVAILABLE or
// DEADLINE_EXCEEDED without an answer from it), the Client decides limits
// and breakers with local, per-process state (limiter.MemoryStore and
// breaker.MemoryStore) and marks its decisions Local, unless WithFailClosed
// was given; it then keeps deciding locally for the service retry interval
// before asking the service again. An error the service itself answered
// (INVALID_ARGUMENT, NOT_FOUND for an unknown policy, UNAVAILABLE because a
// limit says on_store_failure: deny) is returned as it is, never replaced by
// a local decision.
//
// Create one with New; the zero value is not usable. A Client is safe for
// concurrent use and starts no goroutine; it has nothing to close (the caller
// owns the connection).
type Client struct {
	rs  resiliencev1.ResilienceServiceClient
	cs  resiliencev1.CacheServiceClient
	o   options
	lim *limiter.Limiter     // local limits
	brk *breaker.MemoryStore // local breakers
	adm *admission.Admitter  // decides on lim and brk, as the service decides

	downUntil atomic.Int64 // UnixNano until which the service is not asked

	cache *Cache
}

// Option configures New.
type Option func(*options)

type options struct {
	callTimeout     time.Duration
	retryInterval   time.Duration
	failClosed      bool
	now             func() time.Time
	breakerSettings func(name string) breaker.Settings
	localPolicies   map[string]RateLimit
	isFailure       func(error) bool
	near            nearOptions // the cache's near cache (nearcache.go)
}

// WithCallTimeout bounds each call to the service (default
// DefaultCallTimeout). Wait and Allow add the time they ask the service to
// hold the call for tokens. d <= 0 means the default.
func WithCallTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.callTimeout = d
		}
	}
}

// WithServiceRetryInterval sets how long the Client decides locally after
// finding the service unreachable, before it asks it again (default
// DefaultServiceRetryInterval; 0 asks it on every call).
func WithServiceRetryInterval(d time.Duration) Option {
	return func(o *options) { o.retryInterval = max(d, 0) }
}

// WithFailClosed makes calls fail with an error matching
// ErrServiceUnavailable when the service is unreachable, instead of deciding
// with local state.
func WithFailClosed() Option { return func(o *options) { o.failClosed = true } }

// WithClock sets the clock of the local state and of the retry interval
// (default time.Now), for tests.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithLocalBreakerSettings gives the settings of each breaker for local
// decisions (default: breaker.Settings{}, i.e. the defaults of package
// breaker: 5 consecutive failures open it for 30s).
func WithLocalBreakerSettings(f func(name string) breaker.Settings) Option {
	return func(o *options) { o.breakerSettings = f }
}

// WithLocalPolicy gives the limit of a named policy for local decisions.
// Without it, a call limited by a policy name is admitted while the service
// is unreachable (the Client cannot know the limit). Call it once per policy.
func WithLocalPolicy(name string, lim RateLimit) Option {
	return func(o *options) {
		if o.localPolicies == nil {
			o.localPolicies = make(map[string]RateLimit)
		}
		o.localPolicies[name] = lim
	}
}

// WithFailureClassifier sets which errors of a function run through a
// breaker (Do, Call, Allow's done) count as failures (default
// DefaultIsFailure). Whatever it says, context cancellations are never
// reported, and invalid requests (IsCallerError) count as successes: the
// upstream answered.
func WithFailureClassifier(isFailure func(error) bool) Option {
	return func(o *options) { o.isFailure = isFailure }
}

// New returns a Client of the service behind conn, which the caller owns.
func New(conn grpc.ClientConnInterface, opts ...Option) *Client {
	o := options{
		callTimeout:     DefaultCallTimeout,
		retryInterval:   DefaultServiceRetryInterval,
		now:             time.Now,
		breakerSettings: func(string) breaker.Settings { return breaker.Settings{} },
		isFailure:       DefaultIsFailure,
	}
	for _, opt := range opts {
		opt(&o)
	}
	c := &Client{
		rs:  resiliencev1.NewResilienceServiceClient(conn),
		cs:  resiliencev1.NewCacheServiceClient(conn),
		o:   o,
		lim: limiter.New(limiter.NewMemoryStore(limiter.WithMemoryClock(o.now)), limiter.WithClock(o.now)),
		brk: breaker.NewMemoryStore(breaker.WithMemoryClock(o.now)),
	}
	c.adm = admission.New(c.brk, c.lim, admission.WithClock(o.now))
	c.cache = newCache(c)
	return c
}

// serviceDown reports whether the service is in its retry interval after
// being found unreachable.
func (c *Client) serviceDown() bool {
	return c.o.now().UnixNano() < c.downUntil.Load()
}

// invoke calls the service through call, with the correlation id, the call
// timeout plus extra, and the mapping of its errors: nil; the caller's
// context error; an error matching ErrServiceUnavailable (and wrapping the
// status) when the service was unreachable; or the service's status error.
func (c *Client) invoke(ctx context.Context, extra time.Duration, call func(ctx context.Context, opts ...grpc.CallOption) error) error {
	if c.serviceDown() {
		return fmt.Errorf("%w: skipped for the retry interval after a failure", ErrServiceUnavailable)
	}
	cctx, cancel := context.WithTimeout(outgoing(ctx), c.o.callTimeout+extra)
	defer cancel()
	var hdr metadata.MD
	err := call(cctx, grpc.Header(&hdr))
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		// An answer of the service carries its correlation header; a
		// transport failure or a hung service does not.
		if len(hdr.Get(correlation.Header)) == 0 {
			if c.o.retryInterval > 0 {
				c.downUntil.Store(c.o.now().Add(c.o.retryInterval).UnixNano())
			}
			return fmt.Errorf("%w: %w", ErrServiceUnavailable, err)
		}
	}
	return err
}

// invokeFor is invoke for one RPC with an answer: it sends req with call (a
// method of the service's client) and returns the answer with invoke's error.
func invokeFor[Req, Resp any](ctx context.Context, c *Client, extra time.Duration, call func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	var resp Resp
	err := c.invoke(ctx, extra, func(ctx context.Context, opts ...grpc.CallOption) error {
		var err error
		resp, err = call(ctx, req, opts...)
		return err
	})
	return resp, err
}

// outgoing adds the caller's correlation id to ctx's outgoing metadata,
// unless it is already there.
func outgoing(ctx context.Context) context.Context {
	id := correlation.FromContext(ctx)
	if id == "" {
		return ctx
	}
	if md, ok := metadata.FromOutgoingContext(ctx); ok && len(md.Get(correlation.Header)) > 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, correlation.Header, id)
}

// local reports whether err allows a local decision.
func (c *Client) local(err error) bool {
	return !c.o.failClosed && errors.Is(err, ErrServiceUnavailable)
}
