package main

import (
	"context"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/internal/testkit"
)

// fakeServer is an in-process resilienced stand-in on 127.0.0.1: the real
// gRPC health server plus fake ResilienceService and CacheService that
// remember what they were asked. It is safe for concurrent use.
type fakeServer struct {
	resiliencev1.UnimplementedResilienceServiceServer
	resiliencev1.UnimplementedCacheServiceServer

	addr string

	mu       sync.Mutex // protects the fields below
	calls    int        // Acquire, Get and Set calls
	keys     map[string]int
	breakers map[string]int
	peers    map[string]bool
	cache    map[string][]byte
}

// fakeOptions say which services startFake registers.
type fakeOptions struct {
	noResilience bool // leave ResilienceService unimplemented
}

// startFake starts a fakeServer on 127.0.0.1:0, stopped when t ends.
func startFake(t *testing.T, opts fakeOptions) *fakeServer {
	t.Helper()
	lis := testkit.Listen(t)
	f := &fakeServer{
		addr:     lis.Addr().String(),
		keys:     map[string]int{},
		breakers: map[string]int{},
		peers:    map[string]bool{},
		cache:    map[string][]byte{},
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	if opts.noResilience {
		resiliencev1.RegisterResilienceServiceServer(srv, resiliencev1.UnimplementedResilienceServiceServer{})
	} else {
		resiliencev1.RegisterResilienceServiceServer(srv, f)
	}
	resiliencev1.RegisterCacheServiceServer(srv, f)
	testkit.Serve(t, lis, srv.Serve, srv.Stop)
	return f
}

// seen records one call from ctx's peer.
func (f *fakeServer) seenLocked(ctx context.Context) {
	f.calls++
	if p, ok := peer.FromContext(ctx); ok {
		f.peers[p.Addr.String()] = true
	}
}

// Acquire admits every call whose limit allows more than 1000 calls a
// window, and denies all but the first call of a key with a smaller limit.
func (f *fakeServer) Acquire(ctx context.Context, req *resiliencev1.AcquireRequest) (*resiliencev1.AcquireResponse, error) {
	if req.GetKey() == "" || req.GetLimit() == nil || req.GetLimit().GetMaxCalls() <= 0 || req.GetLimit().GetTimeWindow().AsDuration() <= 0 {
		return nil, status.Error(codes.InvalidArgument, "key and a valid limit are required")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seenLocked(ctx)
	f.keys[req.GetKey()]++
	if b := req.GetBreaker(); b != "" {
		f.breakers[b]++
	}
	allowed := req.GetLimit().GetMaxCalls() > 1000 || f.keys[req.GetKey()] == 1
	resp := &resiliencev1.AcquireResponse{Allowed: allowed, Reason: resiliencev1.AcquireReason_ACQUIRE_REASON_ALLOWED}
	if !allowed {
		resp.Reason = resiliencev1.AcquireReason_ACQUIRE_REASON_RATE_LIMITED
	}
	return resp, nil
}

func (f *fakeServer) Get(ctx context.Context, req *resiliencev1.GetRequest) (*resiliencev1.GetResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seenLocked(ctx)
	f.keys[req.GetKey()]++
	v, ok := f.cache[req.GetKey()]
	return &resiliencev1.GetResponse{Found: ok, Value: v}, nil
}

func (f *fakeServer) Set(ctx context.Context, req *resiliencev1.SetRequest) (*resiliencev1.SetResponse, error) {
	if req.GetKey() == "" || req.GetTtl().AsDuration() < 0 {
		return nil, status.Error(codes.InvalidArgument, "key is required and ttl must not be negative")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seenLocked(ctx)
	f.keys[req.GetKey()]++
	f.cache[req.GetKey()] = req.GetValue()
	return &resiliencev1.SetResponse{Stored: true}, nil
}

// snapshot returns the counters.
func (f *fakeServer) snapshot() (calls, keys, breakers, peers int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, len(f.keys), len(f.breakers), len(f.peers)
}
