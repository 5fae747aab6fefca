package client_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/topdeck/resilience/client"
)

// watchUpstream is a health service whose Watch sends one answer and ends
// with code.
type watchUpstream struct {
	healthpb.UnimplementedHealthServer
	code codes.Code
}

func (u *watchUpstream) Watch(_ *healthpb.HealthCheckRequest, s healthpb.Health_WatchServer) error {
	if err := s.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}); err != nil {
		return err
	}
	if u.code != codes.OK {
		return status.Error(u.code, "upstream stream failed")
	}
	return nil
}

// startStreamUpstream serves u over bufconn through a connection with the
// stream interceptor icpt.
func startStreamUpstream(t *testing.T, u healthpb.HealthServer, icpt grpc.StreamClientInterceptor) healthpb.HealthClient {
	t.Helper()
	return healthpb.NewHealthClient(serveUpstream(t, u, grpc.WithStreamInterceptor(icpt)))
}

// drain reads a Watch stream to its end and returns its final error (nil
// for io.EOF).
func drain(t *testing.T, hc healthpb.HealthClient) error {
	t.Helper()
	w, err := hc.Watch(ctxT(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	for range 10 { // one answer, then the end
		if _, err := w.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
	t.Fatal("the stream did not end after 10 messages")
	return nil
}

func TestStreamInterceptorOpensBreaker(t *testing.T) {
	s := mustService(t, testConfig, nil)
	c := client.New(s.conn)
	hc := startStreamUpstream(t, &watchUpstream{code: codes.Unavailable}, client.StreamClientInterceptor(c))
	for i := range 2 {
		if err := drain(t, hc); status.Code(err) != codes.Unavailable {
			t.Fatalf("stream %d: got %v, want UNAVAILABLE from the upstream", i, err)
		}
	}
	err := drain(t, hc)
	var rej *client.RejectedError
	if !errors.Is(err, client.ErrOpen) || !errors.As(err, &rej) || rej.Breaker != "grpc.health.v1.Health" {
		t.Fatalf("stream after 2 failures: got %v, want ErrOpen of breaker grpc.health.v1.Health", err)
	}
}

func TestStreamInterceptorSuccessKeepsItClosed(t *testing.T) {
	s := mustService(t, testConfig, nil)
	c := client.New(s.conn)
	hc := startStreamUpstream(t, &watchUpstream{code: codes.OK}, c.StreamClientInterceptor())
	for i := range 4 {
		if err := drain(t, hc); err != nil {
			t.Fatalf("stream %d: got %v, want a clean end (breaker closed)", i, err)
		}
	}
}

// fakeGuard is a Guard that admits every call and records the outcomes.
type fakeGuard struct {
	mu       sync.Mutex // protects the fields below
	routes   []client.Route
	outcomes []error
}

func (g *fakeGuard) Admit(_ context.Context, r client.Route) (func(error), error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.routes = append(g.routes, r)
	return func(err error) {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.outcomes = append(g.outcomes, err)
	}, nil
}

// The interceptors need nothing but a Guard.
func TestInterceptorsOverAnyGuard(t *testing.T) {
	g := &fakeGuard{}
	hc := startStreamUpstream(t, &watchUpstream{code: codes.Unavailable}, client.StreamClientInterceptor(g))
	if err := drain(t, hc); status.Code(err) != codes.Unavailable {
		t.Fatalf("stream: got %v, want UNAVAILABLE", err)
	}
	u := &upstreamGRPC{}
	uc := healthpb.NewHealthClient(startUpstreamGRPC(t, u, client.UnaryClientInterceptor(g)))
	if _, err := uc.Check(ctxT(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("unary: %v", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.routes) != 2 || g.routes[0].Breaker != "grpc.health.v1.Health" || g.routes[1].Breaker != "grpc.health.v1.Health" {
		t.Errorf("routes admitted: got %+v, want the health service's breaker twice", g.routes)
	}
	if len(g.outcomes) != 2 || status.Code(g.outcomes[0]) != codes.Unavailable || g.outcomes[1] != nil {
		t.Errorf("outcomes: got %v, want the stream's UNAVAILABLE (a failure), then nil", g.outcomes)
	}
}
