package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/client"
	"github.com/topdeck/resilience/client/retry"
	"github.com/topdeck/resilience/correlation"
)

// exampleService starts an in-process resilience service (memory stores)
// whose breakers open after 2 failures; stop it with the returned func.
func exampleService() (*grpc.ClientConn, func()) {
	s, err := startService(testConfig, nil)
	if err != nil {
		panic(err)
	}
	return s.conn, s.stop
}

func ExampleNew() {
	conn, stop := exampleService() // in production: grpc.NewClient("resilienced:50051", ...)
	defer stop()

	c := client.New(conn, client.WithCallTimeout(250*time.Millisecond))
	d, err := c.Check(context.Background(), "azure-devops/org-42", client.Policy("reports"))
	fmt.Println(d.Allowed, d.Remaining, err)
	// Output: true 1 <nil>
}

func ExampleClient_Check() {
	conn, stop := exampleService()
	defer stop()
	c := client.New(conn)

	lim := client.RateLimit{MaxCalls: 2, Window: time.Minute}
	for range 3 {
		d, _ := c.Check(context.Background(), "exports", lim)
		fmt.Println(d.Allowed, d.Reason, d.RetryAfter > 0)
	}
	// Output:
	// true allowed false
	// true allowed false
	// false rate_limited true
}

func ExampleClient_Wait() {
	conn, stop := exampleService()
	defer stop()
	c := client.New(conn)

	lim := client.RateLimit{MaxCalls: 50, Window: time.Second, Burst: 1} // one every 20ms
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for range 3 {
		d, err := c.Wait(ctx, "crawler", lim) // holds the call until its token is there
		fmt.Println(d.Allowed, err)
	}

	hourly := client.RateLimit{MaxCalls: 1, Window: time.Hour}
	_, _ = c.Wait(ctx, "nightly", hourly)
	_, err := c.Wait(ctx, "nightly", hourly)           // the next token is an hour away:
	fmt.Println(errors.Is(err, client.ErrRateLimited)) // refused at once, never past the deadline
	// Output:
	// true <nil>
	// true <nil>
	// true <nil>
	// true
}

func ExampleClient_Do() {
	conn, stop := exampleService()
	defer stop()
	c := client.New(conn)
	ctx := context.Background()

	callUpstream := func(ctx context.Context) error { return errors.New("502 bad gateway") }
	for range 3 {
		err := c.Do(ctx, "azure-devops", callUpstream)
		var open *client.RejectedError
		if errors.As(err, &open) && errors.Is(err, client.ErrOpen) {
			fmt.Println("open; retry within", open.RetryAfter.Round(time.Minute))
			continue
		}
		fmt.Println(err)
	}
	// Output:
	// 502 bad gateway
	// 502 bad gateway
	// open; retry within 1m0s
}

func ExampleClient_Allow() {
	conn, stop := exampleService()
	defer stop()
	c := client.New(conn)

	done, err := c.Allow(context.Background(), "billing")
	if err != nil {
		fmt.Println("not admitted:", err)
		return
	}
	err = nil // make the call here
	done(err) // report its outcome, exactly once
	fmt.Println("reported")
	// Output: reported
}

func ExampleCall() {
	conn, stop := exampleService()
	defer stop()
	c := client.New(conn)

	n, err := client.Call(context.Background(), c, "inventory", func(ctx context.Context) (int, error) {
		return 42, nil
	}, client.WithRateLimit("inventory/reads", client.RateLimit{MaxCalls: 100, Window: time.Second}))
	fmt.Println(n, err)
	// Output: 42 <nil>
}

func ExampleWithFailureClassifier() {
	conn, stop := exampleService()
	defer stop()
	errNoChange := errors.New("nothing to do")
	c := client.New(conn, client.WithFailureClassifier(func(err error) bool {
		return !errors.Is(err, errNoChange) && client.DefaultIsFailure(err)
	}))
	for range 3 {
		err := c.Do(context.Background(), "sync", func(context.Context) error { return errNoChange })
		fmt.Println(err)
	}
	// Output:
	// nothing to do
	// nothing to do
	// nothing to do
}

func ExampleClient_RoundTripper() {
	conn, stop := exampleService()
	defer stop()
	c := client.New(conn)

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer upstream.Close()

	hc := &http.Client{Transport: c.RoundTripper(upstream.Client().Transport,
		client.WithHTTPRoute(func(r *http.Request) client.Route {
			return client.Route{Breaker: "upstream:" + r.URL.Hostname()}
		}))}
	defer hc.CloseIdleConnections()
	ctx := correlation.NewContext(context.Background(), "job-7") // sent to the upstream too
	for range 3 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, upstream.URL, nil)
		resp, err := hc.Do(req)
		if err != nil {
			fmt.Println(errors.Is(err, client.ErrOpen))
			continue
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode)
	}
	// Output:
	// 503
	// 503
	// true
}

func ExampleClient_UnaryClientInterceptor() {
	conn, stop := exampleService()
	defer stop()
	c := client.New(conn)

	// Every unary call on this connection goes through its breaker (by
	// default one per gRPC service) and, here, a fleet-wide rate limit.
	upstream, err := grpc.NewClient("passthrough:///upstream.example:443",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(c.UnaryClientInterceptor(client.WithGRPCRoute(func(method string) client.Route {
			return client.Route{Breaker: "upstream", Key: "upstream" + method, Limit: client.Policy("reports")}
		}))))
	if err != nil {
		panic(err)
	}
	defer upstream.Close()
	fmt.Println("ready")
	// Output: ready
}

func ExampleUnaryClientInterceptor() {
	conn, stop := exampleService()
	defer stop()
	c := client.New(conn)

	// The interceptors take any client.Guard; *client.Client is one. Both
	// unary calls and streams go through the upstream's breaker.
	route := client.WithGRPCRoute(func(method string) client.Route { return client.Route{Breaker: "upstream"} })
	upstream, err := grpc.NewClient("passthrough:///upstream.example:443",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(client.UnaryClientInterceptor(c, route)),
		grpc.WithChainStreamInterceptor(client.StreamClientInterceptor(c, route)))
	if err != nil {
		panic(err)
	}
	defer upstream.Close()
	fmt.Println("ready")
	// Output: ready
}

func ExampleRoundTripper() {
	conn, stop := exampleService()
	defer stop()
	c := client.New(conn)

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer upstream.Close()
	// Requests to the upstream take a token of a fleet-wide limit first.
	hc := &http.Client{Transport: client.RoundTripper(c, upstream.Client().Transport,
		client.WithHTTPRoute(func(r *http.Request) client.Route {
			return client.Route{Key: "http/" + r.URL.Host, Limit: client.RateLimit{MaxCalls: 1, Window: time.Hour}}
		}))}
	defer hc.CloseIdleConnections()
	for range 2 {
		resp, err := hc.Get(upstream.URL)
		if err != nil {
			fmt.Println(errors.Is(err, client.ErrRateLimited))
			continue
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode)
	}
	// Output:
	// 200
	// true
}

func ExampleGetOrLoad() {
	conn, stop := exampleService()
	defer stop()
	k := client.New(conn).Cache()

	type repo struct{ Name string }
	load := func(ctx context.Context) (repo, error) {
		fmt.Println("loading")
		return repo{Name: "api"}, nil
	}
	for range 2 {
		r, err := client.GetOrLoad(context.Background(), k, "repo/1", time.Minute, load)
		fmt.Println(r.Name, err)
	}
	// Output:
	// loading
	// api <nil>
	// api <nil>
}

func ExampleSetJSON() {
	conn, stop := exampleService()
	defer stop()
	k := client.New(conn).Cache()
	ctx := context.Background()

	_ = client.SetJSON(ctx, k, "settings", map[string]int{"page": 50}, time.Minute)
	v, found, err := client.GetJSON[map[string]int](ctx, k, "settings")
	fmt.Println(v["page"], found, err)
	n, _ := k.DeletePattern(ctx, "sett*")
	fmt.Println(n)
	// Output:
	// 50 true <nil>
	// 1
}

func ExampleCache_Stats() {
	conn, stop := exampleService()
	defer stop()
	k := client.New(conn).Cache()
	ctx := context.Background()

	_ = k.Set(ctx, "a", []byte("1"), 0)
	_, _ = k.Get(ctx, "a")
	_, _ = k.Get(ctx, "b")
	st, _ := k.Stats(ctx)
	fmt.Println(st.Hits, st.Misses, st.HitRatio)
	// Output: 1 1 0.5
}

// The service is unreachable: limits and breakers are decided locally.
func ExampleWithLocalBreakerSettings() {
	conn, err := grpc.NewClient("passthrough:///127.0.0.1:1", // nothing listens there
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	c := client.New(conn, client.WithLocalBreakerSettings(func(name string) breaker.Settings {
		return breaker.Settings{FailureThreshold: 1}
	}))
	ctx := context.Background()

	d, _ := c.Check(ctx, "k", client.RateLimit{MaxCalls: 1, Window: time.Minute})
	fmt.Println(d.Allowed, d.Local)
	_ = c.Do(ctx, "b", func(context.Context) error { return errors.New("boom") })
	err = c.Do(ctx, "b", func(context.Context) error { return nil })
	var open *client.RejectedError
	fmt.Println(errors.Is(err, client.ErrOpen), errors.As(err, &open) && open.Local)
	// Output:
	// true true
	// true true
}

// Retrying through a breaker: the rejection's RetryAfter is honoured.
func Example_retry() {
	conn, stop := exampleService()
	defer stop()
	c := client.New(conn)

	attempts := 0
	err := retry.Do(context.Background(), retry.Config{MaxAttempts: 3, InitialDelay: time.Millisecond},
		func(ctx context.Context) error {
			return c.Do(ctx, "flaky", func(ctx context.Context) error {
				attempts++
				if attempts < 2 {
					return errors.New("temporary")
				}
				return nil
			})
		})
	fmt.Println(err, attempts)
	// Output: <nil> 2
}

// Several limits in one call, all or nothing: a user's and its
// organisation's. A refusal charges neither and names the limit that
// refused.
func ExampleAndLimit() {
	conn, stop := exampleService()
	defer stop()
	c := client.New(conn)
	ctx := context.Background()

	user := client.RateLimit{MaxCalls: 10, Window: time.Minute}
	org := client.RateLimit{MaxCalls: 1, Window: time.Minute}
	d, _ := c.Check(ctx, "ado/user-1", user, client.AndLimit("ado/org-42", org))
	fmt.Println(d.Allowed)
	d, _ = c.Check(ctx, "ado/user-2", user, client.AndLimit("ado/org-42", org))
	fmt.Println(d.Allowed, d.LimitedBy, d.Limits[0].Allowed, d.Limits[1].Reason)
	// Output:
	// true
	// false ado/org-42 true rate_limited
}

// A fleet-wide concurrency limit (a distributed bulkhead): at most one call
// in flight on the key across every process. Do gives the slot back when
// the function returns, even when it panics.
func ExampleRateLimit_concurrency() {
	conn, stop := exampleService()
	defer stop()
	c := client.New(conn)
	ctx := context.Background()

	bulkhead := client.RateLimit{MaxInFlight: 1, InFlightLease: time.Minute}
	_ = c.Do(ctx, "ado", func(ctx context.Context) error {
		d, _ := c.Check(ctx, "ado/in-flight", bulkhead) // another caller, while the call runs
		fmt.Println(d.Allowed, d.Reason)
		return nil
	}, client.WithRateLimit("ado/in-flight", bulkhead))
	d, _ := c.Check(ctx, "ado/in-flight", bulkhead) // Check takes a slot: Release it
	fmt.Println(d.Allowed)
	n, _ := c.Release(ctx, d)
	fmt.Println(n)
	// Output:
	// false concurrency_limited
	// true
	// 1
}

// An upstream's 429 seen through the RoundTripper pauses its key for the
// whole fleet: another client's call on the key is refused at once, for
// the upstream's Retry-After.
func ExampleClient_RoundTripper_upstreamFeedback() {
	conn, stop := exampleService()
	defer stop()
	a, b := client.New(conn), client.New(conn) // in production: two processes
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer upstream.Close()

	lim := client.RateLimit{MaxCalls: 200, Window: time.Minute}
	hc := &http.Client{Transport: a.RoundTripper(nil, client.WithHTTPRoute(func(*http.Request) client.Route {
		return client.Route{Key: "azure-devops/org-42", Limit: lim}
	}))}
	resp, err := hc.Get(upstream.URL)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()

	d, _ := b.Check(context.Background(), "azure-devops/org-42", lim)
	fmt.Println(resp.StatusCode, d.Allowed, d.Reason, d.RetryAfter > 25*time.Second)
	// Output: 429 false upstream_throttled true
}

func ExampleUpstreamFromHTTP() {
	now := time.Unix(1735689600, 0)
	h := http.Header{}
	h.Set("Retry-After", "10")
	h.Set("X-RateLimit-Remaining", "0")
	h.Set("X-RateLimit-Reset", "1735689660") // a Unix time: a minute from now
	u := client.UpstreamFromHTTP(http.StatusTooManyRequests, h, now)
	fmt.Println(u.RetryAfter, u.Remaining, u.HasRemaining, u.ResetAfter, u.Pause())
	// Output: 10s 0 true 1m0s 1m0s
}
