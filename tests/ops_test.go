package tests

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// /metrics exposes the documented series after traffic, with bounded labels.
func TestMetricsEndpoint(t *testing.T) {
	f := startFleet(t, 1, limiterConfig)
	r := f.replicas[0]
	ctx := ctxT(t, 10*time.Second)
	c := f.rs(0)
	for i := 0; i < 3; i++ {
		_, _ = c.Acquire(ctx, &resiliencev1.AcquireRequest{Key: "customer-secret", Policy: "shared"})
	}
	_, _ = c.Acquire(ctx, &resiliencev1.AcquireRequest{Key: "x", Limit: &resiliencev1.RateLimit{MaxCalls: 1, TimeWindow: durationpb.New(time.Hour)}})
	_, _ = c.Acquire(ctx, &resiliencev1.AcquireRequest{Key: "x", Limit: &resiliencev1.RateLimit{MaxCalls: 1, TimeWindow: durationpb.New(time.Hour)}})
	_, _ = c.ResetBreaker(ctx, &resiliencev1.ResetBreakerRequest{Breaker: "ado", State: resiliencev1.CircuitState_CIRCUIT_STATE_OPEN})
	_, _ = c.Acquire(ctx, &resiliencev1.AcquireRequest{Breaker: "ado"})
	_, _ = f.cs(0).Get(ctx, &resiliencev1.GetRequest{Key: "k"})

	want := []string{
		`resilience_acquire_total{degraded="false",policy="shared",reason="allowed",shadow="none"} 3`,
		`resilience_acquire_total{degraded="false",policy="inline",reason="rate_limited",shadow="none"} 1`,
		`resilience_acquire_total{degraded="false",policy="none",reason="circuit_open",shadow="none"} 1`,
		`resilience_breaker_transitions_total{breaker="ado",from="closed",reason="reset",to="open"} 1`,
		`resilience_breaker_state{breaker="ado",state="open"} 1`,
		`resilience_cache_requests_total{op="get",result="miss"} 1`,
		`resilience_store_duration_seconds_bucket{op="evalsha"`,
		`resilience_config_generation 1`,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="Acquire",grpc_service="topdeck.resilience.v1.ResilienceService",grpc_type="unary"}`,
		`grpc_server_handling_seconds_bucket{grpc_method="Acquire"`,
		`go_goroutines`,
	}
	var body string
	eventually(t, 5*time.Second, "metrics missing", func() bool {
		var code int
		code, body = httpGet(t, "http://"+r.metricsAddr+"/metrics")
		if code != http.StatusOK {
			return false
		}
		for _, w := range want {
			if !strings.Contains(body, w) {
				return false
			}
		}
		return true
	})
	if strings.Contains(body, "customer-secret") {
		t.Errorf("a caller's key is a metric label")
	}
	if code, _ := httpGet(t, "http://"+r.metricsAddr+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: got %d, want 200", code)
	}
	if code, _ := httpGet(t, "http://"+r.metricsAddr+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: got %d, want 200", code)
	}
	if code, _ := httpGet(t, "http://"+r.metricsAddr+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without --pprof: got %d, want 404", code)
	}
	withPprof := startReplica(t, "--pprof")
	if code, _ := httpGet(t, "http://"+withPprof.metricsAddr+"/debug/pprof/"); code != http.StatusOK {
		t.Errorf("/debug/pprof/ with --pprof: got %d, want 200", code)
	}
}

// A reload that adds a policy makes it usable without a restart; a broken
// file leaves the running configuration in force and is counted.
func TestLiveReload(t *testing.T) {
	path := writeConfig(t, "limits:\n  a:\n    max_calls: 5\n    time_window: 1s\n")
	r := startReplica(t, "--config", path)
	c := resiliencev1.NewResilienceServiceClient(r.conn)
	ctx := ctxT(t, 20*time.Second)
	if _, err := c.Acquire(ctx, &resiliencev1.AcquireRequest{Key: "k", Policy: "b"}); status.Code(err) != codes.NotFound {
		t.Fatalf("policy b before the reload: got %v, want NOT_FOUND", err)
	}
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("limits:\n  a:\n    max_calls: 5\n    time_window: 1s\n  b:\n    max_calls: 1\n    time_window: 1h\n")
	eventually(t, 5*time.Second, "policy b not usable after the file changed", func() bool {
		resp, err := c.Acquire(ctx, &resiliencev1.AcquireRequest{Key: "k", Policy: "b"})
		return err == nil && resp.GetAllowed()
	})
	write("limits:\n  b:\n    max_calls: 0\n    time_window: 1h\n") // invalid
	eventually(t, 5*time.Second, "no rejection logged for a broken file", func() bool {
		return strings.Contains(r.Logs(), "configuration reload rejected")
	})
	if resp, err := c.Acquire(ctx, &resiliencev1.AcquireRequest{Key: "k2", Policy: "a"}); err != nil || !resp.GetAllowed() {
		t.Errorf("policy a after a broken reload: got %v, %v; want the old config in force", resp, err)
	}
	_, body := httpGet(t, "http://"+r.metricsAddr+"/metrics")
	for _, w := range []string{`resilience_config_reloads_total{result="failure"} 1`, `resilience_config_reloads_total{result="success"} 1`, `resilience_config_generation 2`} {
		if !strings.Contains(body, w) {
			t.Errorf("metrics: missing %q", w)
		}
	}
	// SIGHUP reloads at once, even when the content did not change.
	write("limits:\n  c:\n    max_calls: 1\n    time_window: 1h\n")
	if err := r.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "policy c not usable after SIGHUP", func() bool {
		resp, err := c.Acquire(ctx, &resiliencev1.AcquireRequest{Key: "k3", Policy: "c"})
		return err == nil && resp.GetAllowed()
	})
}

// With OTEL_EXPORTER_OTLP_ENDPOINT set, calls are traced: the log line of a
// call carries the trace id the caller propagated.
func TestTraceIDInLogs(t *testing.T) {
	r := startReplicaEnv(t, []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:1", // nothing listens: export fails quietly
		"OTEL_EXPORTER_OTLP_TIMEOUT=100",
		"OTEL_BSP_SCHEDULE_DELAY=100",
	}, "--log-level", "debug") // a successful BreakerState is logged at debug
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01", "x-correlation-id", "traced-1")
	_, _ = resiliencev1.NewResilienceServiceClient(r.conn).BreakerState(ctx, &resiliencev1.BreakerStateRequest{Breaker: "b"})
	eventually(t, 5*time.Second, "no log line with the propagated trace_id", func() bool {
		for _, l := range r.LogLines() {
			if l["correlation_id"] == "traced-1" && l["trace_id"] == traceID {
				return true
			}
		}
		return false
	})
	// The failed exports are reported through the JSON log too: every line
	// of output is JSON.
	time.Sleep(300 * time.Millisecond) // a few export attempts
	r.Stop()
	for _, line := range strings.Split(strings.TrimSpace(r.Logs()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("a log line is not JSON: %q", line)
		}
	}
}
