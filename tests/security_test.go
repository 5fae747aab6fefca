package tests

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
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

func tokenSHA(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

// securityConfig has two tenants, a and b, each with a caller, an operator
// and an Envoy principal (token "<tenant>-<role>"), one Envoy domain and
// breakers that open on the first failure.
func securityConfig() string {
	var b strings.Builder
	b.WriteString(`
breakers:
  default: {failure_threshold: 1, recovery_timeout: 1h}
envoy_ratelimit:
  - domain: edge
    descriptors:
      - key: remote_address
        rate_limit: {unit: hour, requests_per_unit: 1}
auth:
  tenant_defaults: {requests_per_second: 100000}
  principals:
`)
	for _, tenant := range []string{"a", "b"} {
		for _, role := range []string{"caller", "operator", "envoy"} {
			name := tenant + "-" + role
			b.WriteString("    - {name: " + name + ", tenant: " + tenant + ", roles: [" + role + "], token_sha256: " + tokenSHA(name) + "}\n")
		}
	}
	return b.String()
}

// as returns ctx carrying token as a bearer token.
func as(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// call is one method of the matrix, with a request that passes validation.
type call struct {
	method string
	role   string // the role it needs
	do     func(ctx context.Context, conn *grpc.ClientConn) error
}

func matrixCalls() []call {
	res := func(conn *grpc.ClientConn) resiliencev1.ResilienceServiceClient {
		return resiliencev1.NewResilienceServiceClient(conn)
	}
	cache := func(conn *grpc.ClientConn) resiliencev1.CacheServiceClient {
		return resiliencev1.NewCacheServiceClient(conn)
	}
	limit := &resiliencev1.RateLimit{MaxCalls: 100, TimeWindow: durationpb.New(time.Second)}
	return []call{
		{"Acquire", "caller", func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := res(c).Acquire(ctx, &resiliencev1.AcquireRequest{Key: "k", Limit: limit})
			return err
		}},
		{"ReportOutcome", "caller", func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := res(c).ReportOutcome(ctx, &resiliencev1.ReportOutcomeRequest{Breaker: "m", Outcome: resiliencev1.Outcome_OUTCOME_SUCCESS})
			return err
		}},
		{"BreakerState", "caller", func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := res(c).BreakerState(ctx, &resiliencev1.BreakerStateRequest{Breaker: "m"})
			return err
		}},
		{"ListBreakers", "operator", func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := res(c).ListBreakers(ctx, &resiliencev1.ListBreakersRequest{})
			return err
		}},
		{"WatchBreakers", "operator", func(ctx context.Context, c *grpc.ClientConn) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			s, err := res(c).WatchBreakers(ctx, &resiliencev1.WatchBreakersRequest{})
			if err != nil {
				return err
			}
			if _, err := s.Header(); err != nil {
				return err
			}
			// An admitted watch sends its headers and waits; a refused one
			// ends with its status.
			done := make(chan error, 1)
			go func() { _, err := s.Recv(); done <- err }()
			select {
			case err := <-done:
				return err
			case <-time.After(200 * time.Millisecond):
				cancel()
				<-done
				return nil
			}
		}},
		{"ResetBreaker", "operator", func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := res(c).ResetBreaker(ctx, &resiliencev1.ResetBreakerRequest{Breaker: "m"})
			return err
		}},
		{"Get", "caller", func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := cache(c).Get(ctx, &resiliencev1.GetRequest{Key: "k"})
			return err
		}},
		{"Set", "caller", func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := cache(c).Set(ctx, &resiliencev1.SetRequest{Key: "k", Value: []byte("v")})
			return err
		}},
		{"Delete", "caller", func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := cache(c).Delete(ctx, &resiliencev1.DeleteRequest{Keys: []string{"k"}})
			return err
		}},
		{"DeletePattern", "operator", func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := cache(c).DeletePattern(ctx, &resiliencev1.DeletePatternRequest{Pattern: "nothing-*"})
			return err
		}},
		{"GetStats", "operator", func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := cache(c).GetStats(ctx, &resiliencev1.GetStatsRequest{})
			return err
		}},
		{"ShouldRateLimit", "envoy", func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := ratelimitv3.NewRateLimitServiceClient(c).ShouldRateLimit(ctx, rlsRequest("edge", "remote_address", "10.0.0.1"))
			return err
		}},
	}
}

// may reports whether a principal with role may call a method needing need.
func may(role, need string) bool {
	return role == need || (role == "operator" && need == "caller")
}

// The whole role x method matrix: every principal may call exactly the
// methods of its role (an operator's include a caller's); without a known
// credential every method is UNAUTHENTICATED; health and reflection are open.
func TestSecurityRoleMatrix(t *testing.T) {
	r := startReplica(t, "--config", writeConfig(t, securityConfig()))
	for _, c := range matrixCalls() {
		for _, role := range []string{"caller", "operator", "envoy"} {
			err := c.do(as(ctxT(t, 10*time.Second), "a-"+role), r.conn)
			code := status.Code(err)
			switch {
			case may(role, c.role) && (code == codes.PermissionDenied || code == codes.Unauthenticated):
				t.Errorf("%s as %s: got %v, want it admitted", c.method, role, err)
			case !may(role, c.role) && code != codes.PermissionDenied:
				t.Errorf("%s as %s: got %v, want PERMISSION_DENIED", c.method, role, err)
			case !may(role, c.role) && !strings.Contains(status.Convert(err).Message(), `"`+c.role+`"`):
				t.Errorf("%s as %s: got %q, want the message to name the role %q", c.method, role, status.Convert(err).Message(), c.role)
			}
		}
		for name, token := range map[string]string{"no credentials": "", "unknown token": "not-a-token"} {
			if err := c.do(as(ctxT(t, 10*time.Second), token), r.conn); status.Code(err) != codes.Unauthenticated {
				t.Errorf("%s with %s: got %v, want UNAUTHENTICATED", c.method, name, err)
			}
		}
	}
	if _, err := healthpb.NewHealthClient(r.conn).Check(ctxT(t, 5*time.Second), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health without credentials: %v, want it open", err)
	}
	rc, err := reflectionpb.NewServerReflectionClient(r.conn).ServerReflectionInfo(ctxT(t, 5*time.Second))
	if err == nil {
		err = rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	}
	if err == nil {
		_, err = rc.Recv()
	}
	if err != nil {
		t.Errorf("reflection without credentials: %v, want it open", err)
	}
	if strings.Contains(r.Logs(), "not-a-token") {
		t.Error("the logs contain a token that was sent")
	}
}

// Reflection can be switched off.
func TestSecurityReflectionOff(t *testing.T) {
	r := startReplica(t, "--config", writeConfig(t, securityConfig()), "--reflection=false")
	rc, err := reflectionpb.NewServerReflectionClient(r.conn).ServerReflectionInfo(ctxT(t, 5*time.Second))
	if err == nil {
		err = rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	}
	if err == nil {
		_, err = rc.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("reflection with --reflection=false: got %v, want UNIMPLEMENTED", err)
	}
}

// Two tenants using the same names get different buckets, breakers, cache
// entries and Envoy buckets, and see only their own in listings, watches,
// statistics and pattern deletes. On Redis, where key spaces matter.
func TestSecurityTenantIsolation(t *testing.T) {
	rs := redistest.Start(t)
	r := startReplica(t, "--config", writeConfig(t, securityConfig()), "--redis-url", rs.URL())
	res := resiliencev1.NewResilienceServiceClient(r.conn)
	cache := resiliencev1.NewCacheServiceClient(r.conn)
	ctx := ctxT(t, 30*time.Second)
	aC, aO, bC, bO := as(ctx, "a-caller"), as(ctx, "a-operator"), as(ctx, "b-caller"), as(ctx, "b-operator")

	// b watches its breakers before a trips one of the same name.
	wctx, stopWatch := context.WithCancel(bO)
	defer stopWatch()
	watch, err := res.WatchBreakers(wctx, &resiliencev1.WatchBreakersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Header(); err != nil {
		t.Fatalf("WatchBreakers as b: %v", err)
	}

	// Limits: one call an hour on key "k".
	hourly := &resiliencev1.RateLimit{MaxCalls: 1, TimeWindow: durationpb.New(time.Hour)}
	acquire := func(ctx context.Context) bool {
		t.Helper()
		resp, err := res.Acquire(ctx, &resiliencev1.AcquireRequest{Key: "k", Limit: hourly})
		if err != nil {
			t.Fatalf("Acquire: %v", err)
		}
		return resp.GetAllowed()
	}
	if !acquire(aC) || acquire(aC) {
		t.Fatal("a's bucket: want the first call allowed and the second denied")
	}
	if !acquire(bC) {
		t.Error("b's bucket of the same key: denied, want allowed (a used only its own)")
	}

	// Breakers: a trips "payments"; b's "payments" stays closed.
	if _, err := res.ReportOutcome(aC, &resiliencev1.ReportOutcomeRequest{Breaker: "payments", Outcome: resiliencev1.Outcome_OUTCOME_FAILURE}); err != nil {
		t.Fatal(err)
	}
	st, err := res.BreakerState(bC, &resiliencev1.BreakerStateRequest{Breaker: "payments"})
	if err != nil || st.GetStatus().GetState() != resiliencev1.CircuitState_CIRCUIT_STATE_CLOSED {
		t.Errorf("b's payments breaker after a's failure: got %v, %v; want CLOSED", st, err)
	}
	if st, _ := res.BreakerState(aC, &resiliencev1.BreakerStateRequest{Breaker: "payments"}); st.GetStatus().GetState() != resiliencev1.CircuitState_CIRCUIT_STATE_OPEN {
		t.Errorf("a's payments breaker: got %v, want OPEN", st.GetStatus().GetState())
	}
	// b's own transition is the first event b's watch sees: a's was not sent.
	if _, err := res.ReportOutcome(bC, &resiliencev1.ReportOutcomeRequest{Breaker: "b-only", Outcome: resiliencev1.Outcome_OUTCOME_FAILURE}); err != nil {
		t.Fatal(err)
	}
	ev, err := watch.Recv()
	if err != nil || ev.GetEvent().GetBreaker() != "b-only" {
		t.Errorf("b's watch: first event %v, %v; want b-only's (none of a's)", ev, err)
	}
	stopWatch()

	// Listing: each tenant lists its own, with the names it used.
	names := func(ctx context.Context) []string {
		t.Helper()
		l, err := res.ListBreakers(ctx, &resiliencev1.ListBreakersRequest{})
		if err != nil {
			t.Fatalf("ListBreakers: %v", err)
		}
		var out []string
		for _, b := range l.GetBreakers() {
			out = append(out, b.GetName())
		}
		return out
	}
	if got := strings.Join(names(aO), ","); got != "payments" {
		t.Errorf("a's breakers: got %q, want payments", got)
	}
	if got := strings.Join(names(bO), ","); got != "b-only" {
		t.Errorf("b's breakers: got %q, want b-only", got)
	}

	// Cache: same key, different entries; stats and pattern deletes per tenant.
	for _, k := range []string{"x", "y", "z"} {
		if _, err := cache.Set(aC, &resiliencev1.SetRequest{Key: k, Value: []byte("a")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cache.Set(bC, &resiliencev1.SetRequest{Key: "x", Value: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	if g, _ := cache.Get(bC, &resiliencev1.GetRequest{Key: "y"}); g.GetFound() {
		t.Error("b reads a's y: want not found")
	}
	if g, _ := cache.Get(aC, &resiliencev1.GetRequest{Key: "x"}); string(g.GetValue()) != "a" {
		t.Errorf("a's x: got %q, want a", g.GetValue())
	}
	if s, err := cache.GetStats(bO, &resiliencev1.GetStatsRequest{}); err != nil || s.GetKeys() != 1 {
		t.Errorf("b's stats: got %v, %v; want 1 key (a's 3 not counted)", s, err)
	}
	if d, err := cache.DeletePattern(aO, &resiliencev1.DeletePatternRequest{Pattern: "*"}); err != nil || d.GetDeleted() != 3 {
		t.Errorf("a's DeletePattern(*): got %v, %v; want 3 deleted", d, err)
	}
	if g, _ := cache.Get(bC, &resiliencev1.GetRequest{Key: "x"}); string(g.GetValue()) != "b" {
		t.Errorf("b's x after a's DeletePattern(*): got %q, want b (untouched)", g.GetValue())
	}

	// Envoy: the same descriptor in each tenant is its own bucket.
	rls := ratelimitv3.NewRateLimitServiceClient(r.conn)
	code := func(ctx context.Context) ratelimitv3.RateLimitResponse_Code {
		resp, err := rls.ShouldRateLimit(ctx, rlsRequest("edge", "remote_address", "10.0.0.9"))
		if err != nil {
			t.Fatalf("ShouldRateLimit: %v", err)
		}
		return resp.GetOverallCode()
	}
	aE, bE := as(ctx, "a-envoy"), as(ctx, "b-envoy")
	if code(aE) != ratelimitv3.RateLimitResponse_OK || code(aE) != ratelimitv3.RateLimitResponse_OVER_LIMIT {
		t.Error("a's Envoy bucket (1/hour): want OK then OVER_LIMIT")
	}
	if code(bE) != ratelimitv3.RateLimitResponse_OK {
		t.Error("b's Envoy bucket of the same descriptor: OVER_LIMIT, want OK")
	}

	// In Redis, every key of a tenant is in its key space, and no key of
	// tenant b holds a's names.
	keys, err := rs.Client().Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.HasPrefix(k, "resilience:t:a:") || strings.HasPrefix(k, "resilience:t:b:") {
			continue
		}
		// Outside them only the fleet's own keys (store probe, epoch):
		// nothing of the implicit tenant's data key space.
		for _, implicit := range []string{"resilience:rl:", "resilience:br:", "resilience:breakers", "resilience:cache:", "resilience:{cache-stats}"} {
			if strings.HasPrefix(k, implicit) {
				t.Errorf("Redis key %q is outside the tenants' key spaces", k)
			}
		}
	}
}

// A token is rotated by editing the file: the new one works and the old one
// stops working without a restart; the reload is audited.
func TestSecurityTokenRotation(t *testing.T) {
	cfg := func(token string) string {
		return "auth:\n  principals:\n    - {name: app, tenant: a, roles: [caller], token_sha256: " + tokenSHA(token) + "}\n"
	}
	path := writeConfig(t, cfg("old-token"))
	r := startReplica(t, "--config", path)
	res := resiliencev1.NewResilienceServiceClient(r.conn)
	state := func(token string) error {
		_, err := res.BreakerState(as(ctxT(t, 5*time.Second), token), &resiliencev1.BreakerStateRequest{Breaker: "x"})
		return err
	}
	if err := state("old-token"); err != nil {
		t.Fatalf("old token before the rotation: %v", err)
	}
	if err := os.WriteFile(path, []byte(cfg("new-token")), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for state("new-token") != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the new token still refused 15s after the file changed; logs:\n%s", r.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := state("old-token"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("old token after the rotation: got %v, want UNAUTHENTICATED", err)
	}
	if !hasAudit(r, "ConfigReload", "ok", "") {
		t.Errorf("no audit line for the reload; logs:\n%s", r.Logs())
	}
	// A reload that would remove the auth section is refused.
	if err := os.WriteFile(path, []byte("limits: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(15 * time.Second)
	for !hasAudit(r, "ConfigReload", "rejected", "") {
		if time.Now().After(deadline) {
			t.Fatalf("no rejected reload 15s after the auth section was removed; logs:\n%s", r.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := state(""); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no credentials after a reload that drops auth: got %v, want UNAUTHENTICATED (the reload refused)", err)
	}
}

// hasAudit reports whether r logged an audit line of method with result
// (and principal, unless "").
func hasAudit(r *replica, method, result, principal string) bool {
	for _, l := range r.LogLines() {
		if l["msg"] == "audit" && l["method"] == method && l["result"] == result && (principal == "" || l["principal"] == principal) {
			return true
		}
	}
	return false
}

// ResetBreaker, DeletePattern and authentication failures each write one
// audit line with principal, tenant, target and correlation id, and count in
// resilience_audit_events_total.
func TestSecurityAuditLines(t *testing.T) {
	r := startReplica(t, "--config", writeConfig(t, securityConfig()))
	res := resiliencev1.NewResilienceServiceClient(r.conn)
	cache := resiliencev1.NewCacheServiceClient(r.conn)
	ctx := metadata.AppendToOutgoingContext(ctxT(t, 10*time.Second), "x-correlation-id", "audit-test-1")
	if _, err := res.ResetBreaker(as(ctx, "a-operator"), &resiliencev1.ResetBreakerRequest{Breaker: "payments"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.DeletePattern(as(ctx, "b-operator"), &resiliencev1.DeletePatternRequest{Pattern: "user:*"}); err != nil {
		t.Fatal(err)
	}
	if _, err := res.ResetBreaker(as(ctx, "a-caller"), &resiliencev1.ResetBreakerRequest{Breaker: "payments"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("ResetBreaker as a caller: got %v, want PERMISSION_DENIED", err)
	}
	if _, err := cache.Get(as(ctx, "stolen?"), &resiliencev1.GetRequest{Key: "k"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Get with an unknown token: got %v, want UNAUTHENTICATED", err)
	}
	want := []map[string]string{
		{"method": "ResetBreaker", "principal": "a-operator", "tenant": "a", "target": "payments", "result": "ok"},
		{"method": "DeletePattern", "principal": "b-operator", "tenant": "b", "target": "user:*", "result": "ok"},
		{"method": "ResetBreaker", "principal": "a-caller", "tenant": "a", "target": "payments", "result": "permission_denied"},
		{"method": "Get", "principal": "", "result": "unauthenticated"},
	}
	// The lines reach the test through the process's stdout pipe: wait for
	// them (the last may still be in flight when the last call returns).
	var audits []map[string]any
	readAudits := func() bool {
		audits = audits[:0]
		for _, l := range r.LogLines() {
			if l["msg"] == "audit" {
				audits = append(audits, l)
			}
		}
		return len(audits) >= len(want)
	}
	eventually(t, 5*time.Second, "fewer audit lines than calls", readAudits)
	if len(audits) != len(want) {
		t.Fatalf("got %d audit lines, want %d:\n%v", len(audits), len(want), audits)
	}
	for i, w := range want {
		for k, v := range w {
			if got, _ := audits[i][k].(string); got != v {
				t.Errorf("audit line %d: %s = %q, want %q (line %v)", i, k, got, v, audits[i])
			}
		}
		cid, _ := audits[i]["correlation_id"].(string)
		if cid == "" {
			t.Errorf("audit line %d: no correlation_id", i)
		}
	}
	if strings.Contains(r.Logs(), "stolen?") {
		t.Error("the logs contain the unknown token")
	}
	resp, err := http.Get("http://" + r.metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, series := range []string{
		`resilience_audit_events_total{method="ResetBreaker",result="ok"} 1`,
		`resilience_audit_events_total{method="Get",result="unauthenticated"} 1`,
	} {
		if !strings.Contains(string(body), series) {
			t.Errorf("/metrics: want %s", series)
		}
	}
}

// Without an auth section and without TLS, the server refuses to listen on
// a non-loopback address, for gRPC and for metrics, and says what to do.
// (The refusal comes before anything listens.)
func TestSecurityProtectedDefault(t *testing.T) {
	for _, args := range [][]string{
		{"--listen", "0.0.0.0:0", "--metrics-listen", ""},
		{"--listen", "127.0.0.1:0", "--metrics-listen", "0.0.0.0:0"},
	} {
		cmd := exec.Command(filepath.Join(binDir, "resilienced"), args...)
		cmd.Env = append(os.Environ(), "RESILIENCE_LISTEN=", "RESILIENCE_CONFIG=", "RESILIENCE_METRICS_LISTEN=", "RESILIENCE_INSECURE=")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "refusing to listen") || !strings.Contains(string(out), "auth:") || !strings.Contains(string(out), "--insecure") {
			t.Errorf("resilienced %v: got %v, output %q; want a refusal explaining auth: and --insecure", args, err, out)
		}
	}
}

// A message above the transport's bound (cache.max_value_bytes plus
// headroom) is refused with RESOURCE_EXHAUSTED before it is read; a value
// within the transport but above max_value_bytes is INVALID_ARGUMENT.
func TestSecurityMessageLimit(t *testing.T) {
	r := startReplica(t, "--config", writeConfig(t, "cache:\n  max_value_bytes: 1024\n"))
	cache := resiliencev1.NewCacheServiceClient(r.conn)
	_, err := cache.Set(ctxT(t, 10*time.Second), &resiliencev1.SetRequest{Key: "k", Value: make([]byte, 200<<10)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("Set of 200 KiB with max_value_bytes 1024: got %v, want RESOURCE_EXHAUSTED", err)
	}
	_, err = cache.Set(ctxT(t, 10*time.Second), &resiliencev1.SetRequest{Key: "k", Value: make([]byte, 2048)})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("Set of 2 KiB with max_value_bytes 1024: got %v, want INVALID_ARGUMENT", err)
	}
	// The connection survives both.
	if _, err := cache.Set(ctxT(t, 10*time.Second), &resiliencev1.SetRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Errorf("Set of 1 byte afterwards: %v", err)
	}
	// A value the transport cannot carry is refused at load, naming the field.
	cmd := exec.Command(filepath.Join(binDir, "resilienced"), "--listen", "127.0.0.1:0", "--metrics-listen", "",
		"--config", writeConfig(t, "cache:\n  max_value_bytes: 100000000\n"))
	cmd.Env = append(os.Environ(), "RESILIENCE_LISTEN=", "RESILIENCE_CONFIG=")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cache.max_value_bytes") {
		t.Errorf("max_value_bytes 100000000: got %v, %q; want a refusal naming cache.max_value_bytes", err, out)
	}
}

// resilctl carries a token from --token or RESILIENCE_TOKEN.
func TestSecurityResilctlToken(t *testing.T) {
	r := startReplica(t, "--config", writeConfig(t, securityConfig()))
	if out := ok(t, r.addr, "--token", "a-operator", "breakers", "list"); strings.Contains(out, "Unauthenticated") {
		t.Errorf("breakers list with --token: %q", out)
	}
	ctx := ctxT(t, 30*time.Second)
	cmd := ctlCommand(ctx, r.addr, "cache", "stats")
	cmd.Env = append(cmd.Env, "RESILIENCE_TOKEN=a-operator")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("cache stats with RESILIENCE_TOKEN: %v, %s", err, out)
	}
	cmd = ctlCommand(ctx, r.addr, "cache", "stats")
	cmd.Env = append(cmd.Env, "RESILIENCE_TOKEN=")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(strings.ToLower(string(out)), "unauthenticated") {
		t.Errorf("cache stats without a token: %v, %q; want a failure saying unauthenticated", err, out)
	}
}
