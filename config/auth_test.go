package config

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

func digest(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

func TestParseAuth(t *testing.T) {
	data := []byte(`
limits:
  shared: {max_calls: 10, time_window: 1s}
breakers:
  default: {failure_threshold: 3}
auth:
  tenant_defaults:
    requests_per_second: 50
  principals:
    - name: checkout
      tenant: shop
      roles: [caller]
      token_sha256: "` + digest("s3cret") + `"
    - name: ops
      tenant: shop
      roles: [caller, operator]
      tls_identity: spiffe://example.org/ops
    - name: other
      tenant: blog
      roles: [envoy]
      token_sha256: "` + strings.ToUpper(digest("other-token")) + `"
  tenants:
    shop:
      requests_per_second: 7
      max_watch_streams: 2
      limits:
        shared: {max_calls: 99, time_window: 1s}
      breakers:
        default: {recovery_timeout: 5s}
        payments: {failure_threshold: 9}
`)
	c, err := Parse("auth.yaml", data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	a := c.Auth
	if p, ok := a.ByToken("s3cret"); !ok || p.Name != "checkout" || p.Tenant != "shop" || !p.HasRole(RoleCaller) || p.HasRole(RoleOperator) {
		t.Errorf("ByToken(s3cret): got %+v, %v; want checkout of shop, caller only", p, ok)
	}
	if p, ok := a.ByToken("other-token"); !ok || p.Name != "other" {
		t.Errorf("ByToken with an upper-case digest in the file: got %+v, %v; want other", p, ok)
	}
	if p, ok := a.ByToken("wrong"); ok {
		t.Errorf("ByToken(wrong): got %+v, want no principal", p)
	}
	if p, ok := a.ByTLSIdentity("spiffe://example.org/ops"); !ok || p.Name != "ops" {
		t.Errorf("ByTLSIdentity: got %+v, %v; want ops", p, ok)
	}
	if _, ok := a.ByTLSIdentity(""); ok {
		t.Error("ByTLSIdentity(\"\"): got a principal, want none")
	}
	if got, want := a.Limits("shop"), (TenantLimits{RequestsPerSecond: 7, RequestBurst: 14, MaxRequestWait: Duration(DefaultTenantRequestWait), MaxWatchStreams: 2}); got != want {
		t.Errorf("Limits(shop): got %+v, want %+v", got, want)
	}
	if got, want := a.Limits("blog"), (TenantLimits{RequestsPerSecond: 50, RequestBurst: 100, MaxRequestWait: Duration(DefaultTenantRequestWait), MaxWatchStreams: DefaultTenantWatchStreams}); got != want {
		t.Errorf("Limits(blog): got %+v, want %+v", got, want)
	}
	shop := c.Tenant("shop")
	if got := shop.Limits["shared"].MaxCalls; got != 99 {
		t.Errorf("shop's shared limit: got max_calls %d, want 99", got)
	}
	if got := c.Tenant("blog").Limits["shared"].MaxCalls; got != 10 {
		t.Errorf("blog's shared limit: got max_calls %d, want the shared 10", got)
	}
	if got := c.Limits["shared"].MaxCalls; got != 10 {
		t.Errorf("top-level shared limit: got max_calls %d, want 10 (unchanged by the tenant's)", got)
	}
	b, from := shop.BreakerPolicy("payments")
	if from != "payments" || b.FailureThreshold != 9 || b.RecoveryTimeout.D() != 5*time.Second {
		t.Errorf("shop's payments breaker: got %+v from %q, want threshold 9, recovery 5s (the tenant's default)", b, from)
	}
	b, from = shop.BreakerPolicy("x")
	if from != "default" || b.FailureThreshold != 3 || b.RecoveryTimeout.D() != 5*time.Second {
		t.Errorf("shop's default breaker: got %+v from %q, want threshold 3 (shared), recovery 5s (tenant)", b, from)
	}
	if b, _ := c.BreakerPolicy("x"); b.RecoveryTimeout.D() != 30*time.Second {
		t.Errorf("shared default breaker: got recovery %s, want 30s", b.RecoveryTimeout.D())
	}
	if got := c.Tenant(""); got != c {
		t.Error("Tenant(\"\"): want the configuration itself")
	}
	if got, want := strings.Join(a.TenantNames(), ","), "blog,shop"; got != want {
		t.Errorf("TenantNames: got %s, want %s", got, want)
	}
}

func TestParseAuthErrors(t *testing.T) {
	ok := digest("t")
	tests := []parseErrorCase{
		{"empty section", "auth:\n", []string{"bad.yaml:1", "auth: is empty"}},
		{"no principals", "auth:\n  principals: []\n", []string{"auth.principals", "at least one principal"}},
		{"missing name", "auth:\n  principals:\n    - tenant: a\n      roles: [caller]\n      token_sha256: " + ok + "\n", []string{"bad.yaml:3", "auth.principals.0.name", "required"}},
		{"bad tenant", "auth:\n  principals:\n    - name: p\n      tenant: A/B\n      roles: [caller]\n      token_sha256: " + ok + "\n", []string{"auth.principals.0.tenant", "must match"}},
		{"unknown role", "auth:\n  principals:\n    - name: p\n      tenant: a\n      roles: [admin]\n      token_sha256: " + ok + "\n", []string{"auth.principals.0.roles", "admin"}},
		{"no roles", "auth:\n  principals:\n    - name: p\n      tenant: a\n      token_sha256: " + ok + "\n", []string{"auth.principals.0.roles", "required"}},
		{"both credentials", "auth:\n  principals:\n    - name: p\n      tenant: a\n      roles: [caller]\n      token_sha256: " + ok + "\n      tls_identity: x\n", []string{"auth.principals.0.token_sha256", "exactly one"}},
		{"no credential", "auth:\n  principals:\n    - name: p\n      tenant: a\n      roles: [caller]\n", []string{"auth.principals.0.token_sha256", "required"}},
		{"duplicate token", "auth:\n  principals:\n    - {name: p, tenant: a, roles: [caller], token_sha256: " + ok + "}\n    - {name: q, tenant: b, roles: [caller], token_sha256: " + ok + "}\n", []string{"bad.yaml:4", "auth.principals.1.token_sha256", "principal 0"}},
		{"duplicate name", "auth:\n  principals:\n    - {name: p, tenant: a, roles: [caller], token_sha256: " + ok + "}\n    - {name: p, tenant: b, roles: [caller], tls_identity: x}\n", []string{"auth.principals.1.name", "principal 0"}},
		{"tenant without principal", "auth:\n  principals:\n    - {name: p, tenant: a, roles: [caller], token_sha256: " + ok + "}\n  tenants:\n    typo: {requests_per_second: 5}\n", []string{"auth.tenants.typo", "no principal"}},
		{"negative rate", "auth:\n  principals:\n    - {name: p, tenant: a, roles: [caller], token_sha256: " + ok + "}\n  tenants:\n    a: {requests_per_second: -5}\n", []string{"auth.tenants.a.requests_per_second"}},
		{"tenant limit", "auth:\n  principals:\n    - {name: p, tenant: a, roles: [caller], token_sha256: " + ok + "}\n  tenants:\n    a:\n      limits:\n        x: {max_calls: 0, time_window: 1s}\n", []string{"auth.tenants.a.limits.x.max_calls"}},
		{"value beyond the transport", "cache:\n  max_value_bytes: 100000000\n", []string{"bad.yaml:2", "cache.max_value_bytes", "transport"}},
	}
	runParseErrors(t, tests)
}

// A token pasted where its digest belongs is refused without being echoed:
// the error ends up in logs.
func TestParseAuthNeverEchoesAToken(t *testing.T) {
	const token = "tdk_live_0123456789abcdef"
	_, err := Parse("bad.yaml", []byte("auth:\n  principals:\n    - {name: p, tenant: a, roles: [caller], token_sha256: "+token+"}\n"))
	if err == nil || !strings.Contains(err.Error(), "token_sha256") {
		t.Fatalf("Parse: got %v, want an error naming token_sha256", err)
	}
	if strings.Contains(err.Error(), token) {
		t.Errorf("Parse error %q contains the token", err)
	}
}
