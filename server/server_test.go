package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/cache"
	"github.com/topdeck/resilience/config"
	"github.com/topdeck/resilience/correlation"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/internal/testkit"
	"github.com/topdeck/resilience/limiter"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type testEnv struct {
	srv   *Server
	conn  *grpc.ClientConn
	logs  *testkit.SyncBuffer
	clock *testClock // the clock of the backends of startServer
}

// testClock is the real clock moved forward by what a test advanced it,
// so that a test can let a breaker's recovery timeout pass without
// sleeping while reservations still wait in real time.
type testClock struct{ offset atomic.Int64 }

// Now returns the real time plus the offset.
func (c *testClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// Advance moves the clock forward by d.
func (c *testClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// startServer runs a Server over bufconn on memory backends reading a
// testClock, and returns a connection to it.
func startServer(t *testing.T, cfg *config.Config, opts ...Option) *testEnv {
	t.Helper()
	if cfg == nil {
		cfg = config.Default()
	}
	clock := &testClock{}
	env := startServerWith(t, cfg, memoryBackends(t, cfg, WithBackendClock(clock.Now)), opts...)
	env.clock = clock
	return env
}

// parseConfig returns the configuration in yaml, failing t if it is
// invalid.
func parseConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startServerWith runs a Server on b over bufconn.
func startServerWith(t *testing.T, cfg *config.Config, b *Backends, opts ...Option) *testEnv {
	t.Helper()
	logs := &testkit.SyncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	srv := New(cfg, b, append([]Option{WithLogger(logger)}, opts...)...)
	lis := bufconn.Listen(1 << 20)
	testkit.Serve(t, lis, srv.Serve, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	conn := testkit.DialBufconn(t, lis, "passthrough:///bufnet")
	return &testEnv{srv: srv, conn: conn, logs: logs}
}

// memoryStores returns the embedded stores for cfg, as cmd/resilienced
// builds them without Redis, reading now (nil: time.Now).
func memoryStores(t testing.TB, cfg *config.Config, now func() time.Time) Stores {
	t.Helper()
	if now == nil {
		now = time.Now
	}
	cs, err := cache.NewMemoryStore(cache.WithMaxEntries(int(cfg.Cache.MaxMemoryEntries)), cache.WithClock(now))
	if err != nil {
		t.Fatalf("cache.NewMemoryStore: %v", err)
	}
	return Stores{
		Limiter: limiter.NewMemoryStore(limiter.WithMemoryClock(now)),
		Breaker: breaker.NewMemoryStore(breaker.WithMemoryClock(now)),
		Cache:   cs,
	}
}

// memoryBackends returns backends on the embedded stores; with
// WithBackendClock among opts, the stores read that clock too.
func memoryBackends(t testing.TB, cfg *config.Config, opts ...BackendOption) *Backends {
	t.Helper()
	var o Backends
	for _, opt := range opts {
		opt(&o)
	}
	b, err := NewBackends(cfg, memoryStores(t, cfg, o.now), slog.New(slog.NewJSONHandler(&testkit.SyncBuffer{}, nil)), opts...)
	if err != nil {
		t.Fatalf("NewBackends: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// ctxT returns a context that ends after 5s or with t.
func ctxT(t *testing.T) context.Context { return testkit.Context(t, 5*time.Second) }

// wantInvalid checks that err is INVALID_ARGUMENT naming field, in the
// message and in a BadRequest detail.
func wantInvalid(t *testing.T, err error, field string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("got %v, want INVALID_ARGUMENT naming %q", err, field)
	}
	if !strings.HasPrefix(st.Message(), field+":") {
		t.Errorf("message %q: want it to start with %q", st.Message(), field+":")
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			if got := br.GetFieldViolations()[0].GetField(); got != field {
				t.Errorf("BadRequest field: got %q, want %q", got, field)
			}
			return
		}
	}
	t.Errorf("status %v: want a BadRequest detail", st)
}

func TestAcquireValidation(t *testing.T) {
	cfg := parseConfig(t, "limits:\n  small:\n    max_calls: 5\n    time_window: 1s\n")
	env := startServer(t, cfg)
	c := resiliencev1.NewResilienceServiceClient(env.conn)
	lim := &resiliencev1.RateLimit{MaxCalls: 10, TimeWindow: durationpb.New(time.Second)}
	long := strings.Repeat("k", MaxKeyBytes+1)
	tests := []struct {
		name  string
		req   *resiliencev1.AcquireRequest
		field string
	}{
		{"nothing", &resiliencev1.AcquireRequest{}, "key"},
		{"key too long", &resiliencev1.AcquireRequest{Key: long, Limit: lim}, "key"},
		{"breaker too long", &resiliencev1.AcquireRequest{Breaker: long}, "breaker"},
		{"key without limit", &resiliencev1.AcquireRequest{Key: "k"}, "limit"},
		{"limit and policy", &resiliencev1.AcquireRequest{Key: "k", Limit: lim, Policy: "small"}, "limit"},
		{"limit without key", &resiliencev1.AcquireRequest{Breaker: "b", Limit: lim}, "key"},
		{"zero max_calls", &resiliencev1.AcquireRequest{Key: "k", Limit: &resiliencev1.RateLimit{TimeWindow: durationpb.New(time.Second)}}, "limit.max_calls"},
		{"negative max_calls", &resiliencev1.AcquireRequest{Key: "k", Limit: &resiliencev1.RateLimit{MaxCalls: -1, TimeWindow: durationpb.New(time.Second)}}, "limit.max_calls"},
		{"missing window", &resiliencev1.AcquireRequest{Key: "k", Limit: &resiliencev1.RateLimit{MaxCalls: 1}}, "limit.time_window"},
		{"zero window", &resiliencev1.AcquireRequest{Key: "k", Limit: &resiliencev1.RateLimit{MaxCalls: 1, TimeWindow: durationpb.New(0)}}, "limit.time_window"},
		{"negative window", &resiliencev1.AcquireRequest{Key: "k", Limit: &resiliencev1.RateLimit{MaxCalls: 1, TimeWindow: durationpb.New(-time.Second)}}, "limit.time_window"},
		{"negative burst", &resiliencev1.AcquireRequest{Key: "k", Limit: &resiliencev1.RateLimit{MaxCalls: 1, TimeWindow: durationpb.New(time.Second), Burst: -2}}, "limit.burst"},
		{"negative cost", &resiliencev1.AcquireRequest{Key: "k", Limit: lim, Cost: -1}, "cost"},
		{"cost above burst", &resiliencev1.AcquireRequest{Key: "k", Limit: lim, Cost: 11}, "cost"},
		{"cost above policy burst", &resiliencev1.AcquireRequest{Key: "k", Policy: "small", Cost: 6}, "cost"},
		{"negative max_wait", &resiliencev1.AcquireRequest{Key: "k", Limit: lim, MaxWait: durationpb.New(-time.Millisecond)}, "max_wait"},
		{"invalid max_wait", &resiliencev1.AcquireRequest{Key: "k", Limit: lim, MaxWait: &durationpb.Duration{Seconds: 1, Nanos: -5}}, "max_wait"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Acquire(ctxT(t), tt.req)
			wantInvalid(t, err, tt.field)
		})
	}
	t.Run("unknown policy", func(t *testing.T) {
		_, err := c.Acquire(ctxT(t), &resiliencev1.AcquireRequest{Key: "k", Policy: "nope"})
		if got := status.Code(err); got != codes.NotFound || !strings.Contains(err.Error(), `"nope"`) {
			t.Errorf("got %v, want NOT_FOUND naming the policy", err)
		}
	})
}

func TestBreakerRPCValidation(t *testing.T) {
	env := startServer(t, nil)
	c := resiliencev1.NewResilienceServiceClient(env.conn)
	ctx := ctxT(t)
	long := strings.Repeat("b", MaxKeyBytes+1)

	_, err := c.ReportOutcome(ctx, &resiliencev1.ReportOutcomeRequest{Outcome: resiliencev1.Outcome_OUTCOME_SUCCESS})
	wantInvalid(t, err, "breaker")
	_, err = c.ReportOutcome(ctx, &resiliencev1.ReportOutcomeRequest{Breaker: "b"})
	wantInvalid(t, err, "outcome")
	_, err = c.ReportOutcome(ctx, &resiliencev1.ReportOutcomeRequest{Breaker: "b", Outcome: 42})
	wantInvalid(t, err, "outcome")
	_, err = c.ReportOutcome(ctx, &resiliencev1.ReportOutcomeRequest{Breaker: "b", Outcome: resiliencev1.Outcome_OUTCOME_FAILURE, Latency: durationpb.New(-time.Second)})
	wantInvalid(t, err, "latency")
	_, err = c.BreakerState(ctx, &resiliencev1.BreakerStateRequest{})
	wantInvalid(t, err, "breaker")
	_, err = c.BreakerState(ctx, &resiliencev1.BreakerStateRequest{Breaker: long})
	wantInvalid(t, err, "breaker")
	_, err = c.ListBreakers(ctx, &resiliencev1.ListBreakersRequest{PageSize: -1})
	wantInvalid(t, err, "page_size")
	_, err = c.ListBreakers(ctx, &resiliencev1.ListBreakersRequest{PageSize: maxPageSize + 1})
	wantInvalid(t, err, "page_size")
	_, err = c.ResetBreaker(ctx, &resiliencev1.ResetBreakerRequest{})
	wantInvalid(t, err, "breaker")
	_, err = c.ResetBreaker(ctx, &resiliencev1.ResetBreakerRequest{Breaker: "b", State: resiliencev1.CircuitState_CIRCUIT_STATE_HALF_OPEN})
	wantInvalid(t, err, "state")
	_, err = c.ResetBreaker(ctx, &resiliencev1.ResetBreakerRequest{Breaker: "b", State: 9})
	wantInvalid(t, err, "state")

	stream, err := c.WatchBreakers(ctx, &resiliencev1.WatchBreakersRequest{Prefix: long})
	if err == nil {
		_, err = stream.Recv()
	}
	wantInvalid(t, err, "prefix")
}

func TestCacheValidation(t *testing.T) {
	cfg := parseConfig(t, "cache:\n  max_value_bytes: 8\n")
	env := startServer(t, cfg)
	c := resiliencev1.NewCacheServiceClient(env.conn)
	ctx := ctxT(t)

	_, err := c.Get(ctx, &resiliencev1.GetRequest{})
	wantInvalid(t, err, "key")
	_, err = c.Set(ctx, &resiliencev1.SetRequest{Key: strings.Repeat("x", MaxKeyBytes+1)})
	wantInvalid(t, err, "key")
	_, err = c.Set(ctx, &resiliencev1.SetRequest{Key: "k", Ttl: durationpb.New(-time.Second)})
	wantInvalid(t, err, "ttl")
	_, err = c.Set(ctx, &resiliencev1.SetRequest{Key: "k", Value: []byte("123456789")})
	wantInvalid(t, err, "value")
	if !strings.Contains(err.Error(), "max_value_bytes 8") {
		t.Errorf("got %v, want the message to name max_value_bytes 8", err)
	}
	_, err = c.Delete(ctx, &resiliencev1.DeleteRequest{})
	wantInvalid(t, err, "keys")
	_, err = c.Delete(ctx, &resiliencev1.DeleteRequest{Keys: []string{"a", ""}})
	wantInvalid(t, err, "keys[1]")
	_, err = c.DeletePattern(ctx, &resiliencev1.DeletePatternRequest{})
	wantInvalid(t, err, "pattern")
}

func TestHealth(t *testing.T) {
	env := startServer(t, nil)
	h := healthpb.NewHealthClient(env.conn)
	ctx := ctxT(t)
	check := func(name string, want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		resp, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: name})
		if err != nil {
			t.Fatalf("Check(%q): %v", name, err)
		}
		if resp.GetStatus() != want {
			t.Errorf("Check(%q): got %v, want %v", name, resp.GetStatus(), want)
		}
	}
	check("", healthpb.HealthCheckResponse_SERVING)
	check("topdeck.resilience.v1.ResilienceService", healthpb.HealthCheckResponse_SERVING)
	check(StoreHealthName, healthpb.HealthCheckResponse_SERVING)
	env.srv.SetStoreHealthy(false)
	check(StoreHealthName, healthpb.HealthCheckResponse_NOT_SERVING)
	check("", healthpb.HealthCheckResponse_SERVING)
}

// logLine is one JSON log line of the logging interceptor.
type logLine struct {
	Msg           string  `json:"msg"`
	Method        string  `json:"grpc.method"`
	Code          string  `json:"grpc.code"`
	TimeMS        float64 `json:"grpc.time_ms"`
	CorrelationID string  `json:"correlation_id"`
}

func findLogLines(t *testing.T, logs, method string) []logLine {
	t.Helper()
	var out []logLine
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var ll logLine
		if err := json.Unmarshal([]byte(l), &ll); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		if ll.Method == method && ll.Msg == "finished call" {
			out = append(out, ll)
		}
	}
	return out
}

func TestCorrelationIDAndLogging(t *testing.T) {
	env := startServer(t, nil)
	c := resiliencev1.NewResilienceServiceClient(env.conn)

	// A caller's id is echoed in the header and logged.
	var hdr metadata.MD
	ctx := metadata.AppendToOutgoingContext(ctxT(t), correlation.Header, "caller-id-1")
	_, err := c.BreakerState(ctx, &resiliencev1.BreakerStateRequest{}, grpc.Header(&hdr))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("BreakerState: got %v, want INVALID_ARGUMENT", err)
	}
	if got := hdr.Get(correlation.Header); len(got) != 1 || got[0] != "caller-id-1" {
		t.Errorf("response header %s: got %q, want [caller-id-1]", correlation.Header, got)
	}

	// Without one (or with an unusable one), the server makes one up.
	for _, sent := range []string{"", "bad id", strings.Repeat("x", correlation.MaxLen+1)} {
		hdr = nil
		ctx := ctxT(t)
		if sent != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, correlation.Header, sent)
		}
		_, _ = c.ListBreakers(ctx, &resiliencev1.ListBreakersRequest{PageSize: -1}, grpc.Header(&hdr))
		got := hdr.Get(correlation.Header)
		if len(got) != 1 || !correlation.Valid(got[0]) || got[0] == sent {
			t.Errorf("sent %q: response header %s: got %q, want a fresh valid id", sent, correlation.Header, got)
		}
		// A refused id is said to be refused, with what is allowed.
		why := hdr.Get(InvalidCorrelationHeader)
		if sent == "" && len(why) != 0 {
			t.Errorf("sent no id: response header %s: got %q, want none", InvalidCorrelationHeader, why)
		}
		if sent != "" && (len(why) != 1 || !strings.Contains(why[0], "printable ASCII")) {
			t.Errorf("sent %q: response header %s: got %q, want the rule for ids", sent, InvalidCorrelationHeader, why)
		}
	}

	lines := findLogLines(t, env.logs.String(), "BreakerState")
	if len(lines) != 1 {
		t.Fatalf("got %d log lines for BreakerState, want 1; logs:\n%s", len(lines), env.logs.String())
	}
	if l := lines[0]; l.CorrelationID != "caller-id-1" || l.Code != "InvalidArgument" || l.TimeMS <= 0 {
		t.Errorf("log line: got %+v, want correlation_id caller-id-1, code InvalidArgument, a duration", l)
	}
	if lines := findLogLines(t, env.logs.String(), "ListBreakers"); len(lines) != 3 || lines[0].CorrelationID == "" {
		t.Errorf("ListBreakers log lines: got %+v, want 3 with a generated correlation_id", lines)
	}
}

func TestPanicBecomesInternal(t *testing.T) {
	logs := &testkit.SyncBuffer{}
	l := slog.New(slog.NewJSONHandler(logs, nil))
	srv := grpc.NewServer(interceptors(l, nil)...)
	healthpb.RegisterHealthServer(srv, panicHealth{})
	conn := testkit.ServeBufconn(t, srv)

	_, err := healthpb.NewHealthClient(conn).Check(ctxT(t), &healthpb.HealthCheckRequest{})
	if got := status.Code(err); got != codes.Internal {
		t.Fatalf("got %v, want INTERNAL", err)
	}
	if strings.Contains(err.Error(), "boom") {
		t.Errorf("error %q leaks the panic value to the caller", err)
	}
	out := logs.String()
	if !strings.Contains(out, "panic in handler") || !strings.Contains(out, "boom") || !strings.Contains(out, "goroutine") {
		t.Errorf("logs: want the panic logged with its value and stack, got:\n%s", out)
	}
	// The server keeps serving after a panic.
	_, err = healthpb.NewHealthClient(conn).Check(ctxT(t), &healthpb.HealthCheckRequest{})
	if got := status.Code(err); got != codes.Internal {
		t.Errorf("second call: got %v, want INTERNAL again (server still up)", err)
	}
}

type panicHealth struct {
	healthpb.UnimplementedHealthServer
}

func (panicHealth) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	panic("boom")
}

func TestShutdownMarksNotServing(t *testing.T) {
	srv := New(config.Default(), memoryBackends(t, config.Default()), WithLogger(slog.New(slog.NewJSONHandler(&testkit.SyncBuffer{}, nil))))
	lis := bufconn.Listen(1 << 16)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	<-done
	resp, err := srv.health.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("after Shutdown: got %v, %v; want NOT_SERVING", resp.GetStatus(), err)
	}
}
