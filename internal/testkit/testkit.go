// Package testkit holds the small pieces that tests of several packages
// need alike: a buffer for a logger's concurrent writes, a context that
// ends with the test, a gRPC server served and dialled until the test ends,
// a peak-concurrency gauge, a fan-out of workers that collects their
// errors (or counts what they admit), numbered keys, and the named-test
// table of a conformance suite.
package testkit

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
)

// SyncBuffer is a bytes.Buffer safe for concurrent use, such as the writes
// of a logger. The zero value is an empty buffer.
type SyncBuffer struct {
	mu sync.Mutex // protects b
	b  bytes.Buffer
}

// Write appends p to the buffer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Context returns a context that is cancelled after d, or when tb ends.
func Context(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// Serve runs serve(lis) in a goroutine until tb ends; then it calls stop
// and waits for serve to return. Cleanups registered after Serve (such as
// the connection of DialBufconn) run before stop.
func Serve(tb testing.TB, lis net.Listener, serve func(net.Listener) error, stop func()) {
	tb.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = serve(lis)
	}()
	tb.Cleanup(func() {
		stop()
		<-done
	})
}

// Listen returns a listener on a free port of 127.0.0.1, failing tb if
// there is none.
func Listen(tb testing.TB) net.Listener {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return lis
}

// Dial returns a plaintext client connection to target, with opts after
// its own, closed when tb ends.
func Dial(tb testing.TB, target string, opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient(target, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		tb.Fatalf("grpc.NewClient: %v", err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return conn
}

// DialBufconn returns a plaintext client connection to target over lis,
// with opts after its own, closed when tb ends.
func DialBufconn(tb testing.TB, lis *bufconn.Listener, target string, opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	return Dial(tb, target, append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) })}, opts...)...)
}

// ServeBufconn serves s on an in-memory listener until tb ends, stopping
// it with Stop, and returns a plaintext client connection to it (target
// "passthrough:///bufnet").
func ServeBufconn(tb testing.TB, s *grpc.Server) *grpc.ClientConn {
	tb.Helper()
	lis := bufconn.Listen(1 << 20)
	Serve(tb, lis, s.Serve, s.Stop)
	return DialBufconn(tb, lis, "passthrough:///bufnet")
}

// Gauge counts the callers in a section and remembers the most there were
// at once. The zero value is an empty gauge. It is safe for concurrent use.
type Gauge struct {
	now, peak atomic.Int64
}

// Enter counts one more caller in.
func (g *Gauge) Enter() {
	n := g.now.Add(1)
	for p := g.peak.Load(); n > p && !g.peak.CompareAndSwap(p, n); p = g.peak.Load() {
	}
}

// Leave counts one caller out.
func (g *Gauge) Leave() { g.now.Add(-1) }

// Peak returns the most callers that were in at once.
func (g *Gauge) Peak() int64 { return g.peak.Load() }

// Parallel runs f(0) to f(n-1) each in its own goroutine, waits for all of
// them and returns the errors they returned (none for nil), in the order
// they returned them.
func Parallel(n int, f func(i int) error) []error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			if err := f(i); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	var out []error
	for err := range errs {
		out = append(out, err)
	}
	return out
}

// CountParallel runs n workers, each in its own goroutine, that call f(g)
// (g the worker's number) rounds times, each stopping at its first error.
// It returns the sum of what the calls returned, such as how many of them
// were admitted, and the errors, as Parallel does.
func CountParallel(n, rounds int, f func(g int) (int, error)) (int64, []error) {
	var total atomic.Int64
	errs := Parallel(n, func(g int) error {
		for range rounds {
			k, err := f(g)
			if err != nil {
				return err
			}
			total.Add(int64(k))
		}
		return nil
	})
	return total.Load(), errs
}

// Keys returns n keys, prefix followed by 0 to n-1.
func Keys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = prefix + strconv.Itoa(i)
	}
	return keys
}

// Suite is a list of named tests that each run on a value built for them,
// such as a fresh store and its clock: the shape of a conformance suite
// run against every implementation of an interface.
type Suite[E any] []struct {
	Name string
	Test func(t *testing.T, e E)
}

// Run runs each test of s, in order, as a subtest of t on what newEnv
// builds for that subtest.
func (s Suite[E]) Run(t *testing.T, newEnv func(t *testing.T) E) {
	t.Helper()
	for _, tt := range s {
		t.Run(tt.Name, func(t *testing.T) { tt.Test(t, newEnv(t)) })
	}
}
