package main

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/internal/testkit"
)

// fakeServer is an in-process server with canned answers that records
// what it was asked. Safe for concurrent use.
type fakeServer struct {
	resiliencev1.UnimplementedResilienceServiceServer
	resiliencev1.UnimplementedCacheServiceServer

	names  []string                        // ListBreakers pages through these
	events []*resiliencev1.BreakerEvent    // WatchBreakers sends these
	watch  func(ctx context.Context) error // then returns this (nil: wait for cancel)
	value  map[string][]byte               // the cache
	mu     sync.Mutex                      // protects the fields below
	reqs   []string                        // "Method page_token/key" per call
	corr   []string                        // x-correlation-id of each call
	sets   []*resiliencev1.SetRequest      // Set requests
	lists  []*resiliencev1.ListBreakersRequest
}

func (f *fakeServer) record(ctx context.Context, what string) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, what)
	f.corr = append(f.corr, strings.Join(md.Get("x-correlation-id"), ","))
}

func (f *fakeServer) ListBreakers(ctx context.Context, req *resiliencev1.ListBreakersRequest) (*resiliencev1.ListBreakersResponse, error) {
	f.record(ctx, "ListBreakers "+req.GetPageToken())
	f.mu.Lock()
	f.lists = append(f.lists, req)
	f.mu.Unlock()
	start := 0
	for start < len(f.names) && f.names[start] <= req.GetPageToken() {
		start++
	}
	end := min(start+int(req.GetPageSize()), len(f.names))
	resp := &resiliencev1.ListBreakersResponse{}
	for _, n := range f.names[start:end] {
		resp.Breakers = append(resp.Breakers, &resiliencev1.BreakerStatus{Name: n, State: resiliencev1.CircuitState_CIRCUIT_STATE_CLOSED})
	}
	if end < len(f.names) {
		resp.NextPageToken = f.names[end-1]
	}
	return resp, nil
}

func (f *fakeServer) WatchBreakers(req *resiliencev1.WatchBreakersRequest, stream resiliencev1.ResilienceService_WatchBreakersServer) error {
	f.record(stream.Context(), "WatchBreakers "+req.GetPrefix())
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	for _, e := range f.events {
		if err := stream.Send(&resiliencev1.WatchBreakersResponse{Event: e}); err != nil {
			return err
		}
	}
	if f.watch != nil {
		return f.watch(stream.Context())
	}
	<-stream.Context().Done()
	return stream.Context().Err()
}

func (f *fakeServer) Get(ctx context.Context, req *resiliencev1.GetRequest) (*resiliencev1.GetResponse, error) {
	f.record(ctx, "Get "+req.GetKey())
	v, ok := f.value[req.GetKey()]
	return &resiliencev1.GetResponse{Found: ok, Value: v}, nil
}

func (f *fakeServer) Set(ctx context.Context, req *resiliencev1.SetRequest) (*resiliencev1.SetResponse, error) {
	f.record(ctx, "Set "+req.GetKey())
	f.mu.Lock()
	f.sets = append(f.sets, req)
	f.mu.Unlock()
	return &resiliencev1.SetResponse{Stored: true}, nil
}

// start serves f on a loopback port until the test ends; it returns the
// address.
func (f *fakeServer) start(t *testing.T) string {
	t.Helper()
	lis := testkit.Listen(t)
	s := grpc.NewServer()
	resiliencev1.RegisterResilienceServiceServer(s, f)
	resiliencev1.RegisterCacheServiceServer(s, f)
	testkit.Serve(t, lis, s.Serve, s.Stop)
	return lis.Addr().String()
}

func TestListPagesThroughEverything(t *testing.T) {
	f := &fakeServer{names: []string{"a", "b", "c", "d", "e"}}
	addr := f.start(t)
	stdout, stderr, code := run(t, nil, "", "--addr", addr, "--output", "json", "--correlation-id", "corr-1", "breakers", "list", "--page-size", "2", "--prefix", "x")
	if code != 0 {
		t.Fatalf("exit status: got %d, want 0 (stderr %q)", code, stderr)
	}
	var got struct {
		Breakers []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"breakers"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout)
	}
	var names []string
	for _, b := range got.Breakers {
		names = append(names, b.Name)
	}
	if want := []string{"a", "b", "c", "d", "e"}; !slices.Equal(names, want) {
		t.Errorf("names: got %q, want %q", names, want)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if want := []string{"ListBreakers ", "ListBreakers b", "ListBreakers d"}; !slices.Equal(f.reqs, want) {
		t.Errorf("calls: got %q, want %q", f.reqs, want)
	}
	for i, l := range f.lists {
		if l.GetPrefix() != "x" || l.GetPageSize() != 2 {
			t.Errorf("call %d: got prefix %q page size %d, want x and 2", i, l.GetPrefix(), l.GetPageSize())
		}
	}
	for i, c := range f.corr {
		if c != "corr-1" {
			t.Errorf("call %d: x-correlation-id got %q, want corr-1", i, c)
		}
	}
}

func TestListEmpty(t *testing.T) {
	addr := (&fakeServer{}).start(t)
	stdout, stderr, code := run(t, nil, "", "--addr", addr, "breakers", "list")
	if code != 0 || stdout != "" || !strings.Contains(stderr, "no breakers found") {
		t.Errorf("got exit %d, stdout %q, stderr %q; want 0, nothing, and a note on stderr", code, stdout, stderr)
	}
	stdout, _, code = run(t, nil, "", "--addr", addr, "--output", "json", "breakers", "list")
	if code != 0 || stdout != "{\n  \"breakers\": []\n}\n" {
		t.Errorf("json: got exit %d, stdout %q; want 0 and an empty list", code, stdout)
	}
}

// The watch prints each event, and ends with exit 0 when the process is
// interrupted or the server ends the stream, 1 when the stream fails.
func TestWatch(t *testing.T) {
	ev := &resiliencev1.BreakerEvent{Breaker: "ado", From: resiliencev1.CircuitState_CIRCUIT_STATE_CLOSED, To: resiliencev1.CircuitState_CIRCUIT_STATE_OPEN, Reason: "reset", Generation: 2}

	t.Run("interrupted", func(t *testing.T) {
		f := &fakeServer{events: []*resiliencev1.BreakerEvent{ev}}
		addr := f.start(t)
		stdout := &testkit.SyncBuffer{}
		var stderr bytes.Buffer
		ctx, interrupt := context.WithCancel(context.Background())
		defer interrupt()
		m := &Main{Stdout: stdout, Stderr: &stderr}
		done := make(chan int)
		go func() {
			done <- m.ExitCode(m.Run(ctx, []string{"--addr", addr, "--timeout", "10ms", "breakers", "watch", "--prefix", "a"}))
		}()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(stdout.String(), "ado  CLOSED -> OPEN  reason=reset  generation=2") {
			if time.Now().After(deadline) {
				t.Fatalf("no event line after 10s; stdout %q", stdout.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // well past --timeout: the watch has none
		interrupt()
		if code := <-done; code != 0 {
			t.Errorf("exit status: got %d, want 0 (stderr %q)", code, stderr.String())
		}
		if !strings.Contains(stderr.String(), `watching breakers with prefix "a"`) {
			t.Errorf("stderr: got %q, want the watching note", stderr.String())
		}
	})

	t.Run("server ends the stream", func(t *testing.T) {
		f := &fakeServer{events: []*resiliencev1.BreakerEvent{ev, ev}, watch: func(context.Context) error { return nil }}
		addr := f.start(t)
		stdout, stderr, code := run(t, nil, "", "--addr", addr, "--output", "json", "breakers", "watch")
		if code != 0 {
			t.Fatalf("exit status: got %d, want 0 (stderr %q)", code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if len(lines) != 2 {
			t.Fatalf("got %d lines, want 2:\n%s", len(lines), stdout)
		}
		for _, l := range lines {
			var e struct{ Breaker, To, Reason, Generation string }
			if err := json.Unmarshal([]byte(l), &e); err != nil || e.Breaker != "ado" || e.To != "CIRCUIT_STATE_OPEN" || e.Reason != "reset" || e.Generation != "2" {
				t.Errorf("line %q: got %+v (%v), want ado -> CIRCUIT_STATE_OPEN reset generation 2", l, e, err)
			}
		}
	})

	t.Run("stream fails", func(t *testing.T) {
		f := &fakeServer{watch: func(context.Context) error { return status.Error(codes.Unavailable, "store gone") }}
		addr := f.start(t)
		_, stderr, code := run(t, nil, "", "--addr", addr, "breakers", "watch")
		if code != 1 || !strings.HasSuffix(stderr, "resilctl: UNAVAILABLE: store gone\n") {
			t.Errorf("got exit %d, stderr %q; want 1 and UNAVAILABLE: store gone", code, stderr)
		}
	})
}

func TestCacheSetFromStdin(t *testing.T) {
	f := &fakeServer{value: map[string][]byte{"bin": {0, 1, 2}}}
	addr := f.start(t)
	_, stderr, code := run(t, nil, "bytes\x00in", "--addr", addr, "cache", "set", "k", "-", "--ttl", "90s")
	if code != 0 {
		t.Fatalf("exit status: got %d, want 0 (stderr %q)", code, stderr)
	}
	_, _, code = run(t, nil, "", "--addr", addr, "cache", "set", "k2", "--", "-5")
	if code != 0 {
		t.Fatalf("set of a value starting with -: exit %d, want 0", code)
	}
	f.mu.Lock()
	if len(f.sets) != 2 || string(f.sets[0].GetValue()) != "bytes\x00in" || f.sets[0].GetTtl().AsDuration() != 90*time.Second ||
		string(f.sets[1].GetValue()) != "-5" || f.sets[1].GetTtl() != nil {
		t.Errorf("Set requests: got %v, want k=bytes\\x00in ttl 90s and k2=-5 without ttl", f.sets)
	}
	f.mu.Unlock()

	stdout, _, code := run(t, nil, "", "--addr", addr, "--output", "json", "cache", "get", "bin", "--raw")
	if code != 0 || stdout != "\x00\x01\x02" {
		t.Errorf("get --raw: got exit %d, stdout %q; want 0 and the bytes", code, stdout)
	}
}
