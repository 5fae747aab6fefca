package tests

import (
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/internal/redistest"
)

func TestHealthAndStoreHealth(t *testing.T) {
	rs := redistest.Start(t)
	r := startReplica(t, "--redis-url", rs.URL())
	h := healthpb.NewHealthClient(r.conn)
	check := func(name string, want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := h.Check(ctxT(t, 2*time.Second), &healthpb.HealthCheckRequest{Service: name})
			if err == nil && resp.GetStatus() == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("health %q: got %v, %v; want %v", name, resp.GetStatus(), err, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	check("", healthpb.HealthCheckResponse_SERVING)
	check("redis", healthpb.HealthCheckResponse_SERVING)

	rs.Kill()
	check("redis", healthpb.HealthCheckResponse_NOT_SERVING)
	check("", healthpb.HealthCheckResponse_SERVING) // still answering, degraded

	rs.Restart()
	check("redis", healthpb.HealthCheckResponse_SERVING)
}

func TestReflectionListsServices(t *testing.T) {
	r := startReplica(t)
	stream, err := reflectionpb.NewServerReflectionClient(r.conn).ServerReflectionInfo(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		got = append(got, s.GetName())
	}
	sort.Strings(got)
	for _, want := range []string{"grpc.health.v1.Health", "topdeck.resilience.v1.CacheService", "topdeck.resilience.v1.ResilienceService"} {
		if i := sort.SearchStrings(got, want); i == len(got) || got[i] != want {
			t.Errorf("reflection services %v: missing %q", got, want)
		}
	}
}

func TestInputValidationOverTheWire(t *testing.T) {
	r := startReplica(t)
	c := resiliencev1.NewResilienceServiceClient(r.conn)
	ctx := ctxT(t, 5*time.Second)
	_, err := c.Acquire(ctx, &resiliencev1.AcquireRequest{Key: "k", Limit: &resiliencev1.RateLimit{MaxCalls: 0, TimeWindow: durationpb.New(time.Second)}})
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "limit.max_calls:") {
		t.Errorf("Acquire with max_calls 0: got %v, want INVALID_ARGUMENT naming limit.max_calls", err)
	}
	_, err = c.ReportOutcome(ctx, &resiliencev1.ReportOutcomeRequest{Breaker: "b"})
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "outcome:") {
		t.Errorf("ReportOutcome without outcome: got %v, want INVALID_ARGUMENT naming outcome", err)
	}
	_, err = resiliencev1.NewCacheServiceClient(r.conn).Get(ctx, &resiliencev1.GetRequest{Key: strings.Repeat("k", 257)})
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "key:") {
		t.Errorf("Get with a 257-byte key: got %v, want INVALID_ARGUMENT naming key", err)
	}
}

func TestCorrelationIDInHeaderAndLogs(t *testing.T) {
	r := startReplica(t)
	c := resiliencev1.NewResilienceServiceClient(r.conn)
	ctx := metadata.AppendToOutgoingContext(ctxT(t, 5*time.Second), "x-correlation-id", "blackbox-7")
	var hdr metadata.MD
	_, _ = c.BreakerState(ctx, &resiliencev1.BreakerStateRequest{}, grpc.Header(&hdr))
	if got := hdr.Get("x-correlation-id"); len(got) != 1 || got[0] != "blackbox-7" {
		t.Errorf("x-correlation-id header: got %q, want [blackbox-7]", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, l := range r.LogLines() {
			if l["grpc.method"] == "BreakerState" && l["correlation_id"] == "blackbox-7" && l["grpc.code"] == "InvalidArgument" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line for BreakerState with correlation_id blackbox-7; logs:\n%s", r.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestBadConfigFailsStartup(t *testing.T) {
	p := writeConfig(t, "limits:\n  a:\n    max_calls: 5\n    time_window: 1s\n    burts: 3\n")
	out, err := exec.Command(filepath.Join(binDir, "resilienced"), "--listen", "127.0.0.1:0", "--config", p).CombinedOutput()
	if err == nil {
		t.Fatalf("resilienced started with a bad config; output:\n%s", out)
	}
	for _, want := range []string{p + ":5", "limits.a.burts: unknown field", "burst"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output %q: want it to name %q", out, want)
		}
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("exit: got %v, want code 1", err)
	}
}

func TestBadFlagsAreUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"--log-format", "xml"}, {"--redis-url", "http://x"}, {"--nope"}} {
		cmd := exec.Command(filepath.Join(binDir, "resilienced"), append([]string{"--listen", "127.0.0.1:0"}, args...)...)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("%v: got %v (output %q), want exit code 2", args, err, out)
		}
	}
}

func TestSIGTERMStopsGracefully(t *testing.T) {
	r := startReplica(t)
	r.Stop()
	if r.err != nil {
		t.Errorf("exit after SIGTERM: %v, want success", r.err)
	}
	if !strings.Contains(r.Logs(), `"msg":"stopped"`) {
		t.Errorf("logs: want a stopped line, got:\n%s", r.Logs())
	}
}

func TestHealthProbeFlag(t *testing.T) {
	r := startReplica(t)
	probe := exec.Command(filepath.Join(binDir, "resilienced"), "--health-probe", "--listen", r.addr)
	if out, err := probe.CombinedOutput(); err != nil {
		t.Errorf("--health-probe against a running server: %v\n%s", err, out)
	}
	r.Stop()
	probe = exec.Command(filepath.Join(binDir, "resilienced"), "--health-probe", "--listen", r.addr)
	if out, err := probe.CombinedOutput(); err == nil {
		t.Errorf("--health-probe against a stopped server succeeded: %s", out)
	}
}
