package server

import (
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/topdeck/resilience/config"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/internal/testkit"
)

// Every method the server serves needs a role or is open: a new RPC cannot
// be added without deciding who may call it.
func TestEveryMethodHasARole(t *testing.T) {
	env := startServer(t, nil)
	for svc, info := range env.srv.GRPC().GetServiceInfo() {
		for _, m := range info.Methods {
			full := "/" + svc + "/" + m.Name
			if _, ok := requiredRole(full); !ok {
				t.Errorf("%s has no role in methodRoles", full)
			}
		}
	}
}

func TestCertIdentity(t *testing.T) {
	spiffe, _ := url.Parse("spiffe://example.org/ns/a/sa/b")
	tests := []struct {
		name string
		cert x509.Certificate
		want string
	}{
		{"URI SAN first", x509.Certificate{URIs: []*url.URL{spiffe}, DNSNames: []string{"a.example"}, Subject: pkix.Name{CommonName: "cn"}}, "spiffe://example.org/ns/a/sa/b"},
		{"then DNS SAN", x509.Certificate{DNSNames: []string{"a.example", "b.example"}, Subject: pkix.Name{CommonName: "cn"}}, "a.example"},
		{"then CN", x509.Certificate{Subject: pkix.Name{CommonName: "cn"}}, "cn"},
	}
	for _, tt := range tests {
		if got := certIdentity(&tt.cert); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

func sha(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

// authConfig has tenants a and b, each with a caller; a has an operator
// and a request rate of 1/s with a burst of 3.
func authConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Parse("auth.yaml", []byte(`
auth:
  principals:
    - {name: a-caller, tenant: a, roles: [caller], token_sha256: `+sha("ta")+`}
    - {name: a-ops, tenant: a, roles: [operator], token_sha256: `+sha("to")+`}
    - {name: b-caller, tenant: b, roles: [caller], token_sha256: `+sha("tb")+`}
  tenants:
    a: {requests_per_second: 1, request_burst: 3, max_watch_streams: 1}
`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func withToken(t *testing.T, token string) metadata.MD {
	t.Helper()
	return metadata.Pairs("authorization", "Bearer "+token)
}

func startAuthServer(t *testing.T) *testEnv {
	t.Helper()
	cfg := authConfig(t)
	tenants := NewTenants(cfg, func(c *config.Config) (*Backends, error) {
		return NewBackends(c, memoryStores(t, c, nil), slog.New(slog.NewJSONHandler(&testkit.SyncBuffer{}, nil)))
	})
	t.Cleanup(func() { _ = tenants.Close() })
	return startServer(t, cfg, WithTenants(tenants))
}

func TestAuthRefusals(t *testing.T) {
	env := startAuthServer(t)
	cache := resiliencev1.NewCacheServiceClient(env.conn)
	tests := []struct {
		name  string
		md    metadata.MD
		code  codes.Code
		words string
	}{
		{"no credentials", nil, codes.Unauthenticated, "credentials required"},
		{"unknown token", withToken(t, "nope"), codes.Unauthenticated, "unknown bearer token"},
		{"not bearer", metadata.Pairs("authorization", "Basic eA=="), codes.Unauthenticated, "Bearer"},
		{"caller on an operator method", withToken(t, "tb"), codes.PermissionDenied, `"operator"`},
		{"operator", withToken(t, "to"), codes.OK, ""},
	}
	for _, tt := range tests {
		ctx := metadata.NewOutgoingContext(ctxT(t), tt.md)
		_, err := cache.GetStats(ctx, &resiliencev1.GetStatsRequest{})
		if got := status.Code(err); got != tt.code || !strings.Contains(status.Convert(err).Message(), tt.words) {
			t.Errorf("%s: got %v, want %s mentioning %q", tt.name, err, tt.code, tt.words)
		}
		if strings.Contains(status.Convert(err).Message(), "nope") {
			t.Errorf("%s: the error %q repeats the token", tt.name, err)
		}
	}
	if !strings.Contains(env.logs.String(), `"result":"unauthenticated"`) || strings.Contains(env.logs.String(), "nope") {
		t.Errorf("logs: want unauthenticated audit lines without the token; got\n%s", env.logs.String())
	}
}

func TestTenantsAreIsolated(t *testing.T) {
	env := startAuthServer(t)
	cache := resiliencev1.NewCacheServiceClient(env.conn)
	actx := metadata.NewOutgoingContext(ctxT(t), withToken(t, "ta"))
	bctx := metadata.NewOutgoingContext(ctxT(t), withToken(t, "tb"))
	if _, err := cache.Set(actx, &resiliencev1.SetRequest{Key: "k", Value: []byte("a's")}); err != nil {
		t.Fatalf("Set as a: %v", err)
	}
	got, err := cache.Get(bctx, &resiliencev1.GetRequest{Key: "k"})
	if err != nil || got.GetFound() {
		t.Errorf("Get k as b: got %v, %v; want not found (a's entry)", got, err)
	}
	got, err = cache.Get(actx, &resiliencev1.GetRequest{Key: "k"})
	if err != nil || string(got.GetValue()) != "a's" {
		t.Errorf("Get k as a: got %v, %v; want a's value", got, err)
	}
}

func TestTenantRequestRate(t *testing.T) {
	env := startAuthServer(t)
	res := resiliencev1.NewResilienceServiceClient(env.conn)
	ctx := metadata.NewOutgoingContext(ctxT(t), withToken(t, "ta"))
	var err error
	for i := 0; i < 4 && err == nil; i++ { // burst 3: the 4th is refused
		_, err = res.BreakerState(ctx, &resiliencev1.BreakerStateRequest{Breaker: "x"})
	}
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), `tenant "a"`) {
		t.Fatalf("4th call at 1/s burst 3: got %v, want RESOURCE_EXHAUSTED naming tenant a", err)
	}
	var retry *durationpb.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri.GetRetryDelay()
		}
	}
	if retry == nil || retry.AsDuration() <= 0 {
		t.Errorf("RetryInfo: got %v, want a positive delay", retry)
	}
	// Tenant b is not held back by a.
	bctx := metadata.NewOutgoingContext(ctxT(t), withToken(t, "tb"))
	if _, err := res.BreakerState(bctx, &resiliencev1.BreakerStateRequest{Breaker: "x"}); err != nil {
		t.Errorf("b's call while a is over its rate: %v", err)
	}
}

func TestWatchSlots(t *testing.T) {
	w := &watchSlots{max: 2}
	r1, err := w.open("a", 1)
	if err != nil {
		t.Fatalf("first watch of a: %v", err)
	}
	if _, err := w.open("a", 1); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("second watch of a (limit 1): got %v, want RESOURCE_EXHAUSTED", err)
	}
	r2, err := w.open("b", 1)
	if err != nil {
		t.Fatalf("first watch of b: %v", err)
	}
	if _, err := w.open("c", 1); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "replica") {
		t.Errorf("third watch in total (limit 2): got %v, want RESOURCE_EXHAUSTED for the replica", err)
	}
	r1()
	r1() // a release is idempotent
	if _, err := w.open("a", 1); err != nil {
		t.Errorf("watch of a after its release: %v", err)
	}
	r2()
}
