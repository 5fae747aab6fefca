package server

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/topdeck/resilience/config"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

// Principal is the authenticated caller of a request: its name (for logs
// and audit), its tenant and its roles. The implicit principal of a server
// without an auth section has the implicit tenant ("") and every role.
type Principal struct {
	// Name is the principal's configured name; "" for the implicit one.
	Name string
	// Tenant is the key space of the request; "" is the implicit tenant,
	// whose keys are those of a server without tenants.
	Tenant string
	// Via is how the principal was recognised: "token", "tls" or "none"
	// (no auth section).
	Via string

	roles []string // nil: every role
}

// HasRole reports whether p may act as role.
func (p Principal) HasRole(role string) bool {
	if p.roles == nil {
		return true
	}
	for _, r := range p.roles {
		if r == role {
			return true
		}
	}
	return false
}

type principalKey struct{}

// PrincipalFromContext returns the principal of the request ctx belongs to
// (set by the server's auth interceptor) and whether there is one.
func PrincipalFromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

func withPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// openMethod marks a method anyone may call (health, reflection).
const openMethod = ""

// methodRoles is the role each method needs. A caller's methods are also
// an operator's. Health and reflection are open; any method not listed is
// refused (fail closed), and TestEveryMethodHasARole keeps the table
// complete.
var methodRoles = map[string]string{
	resiliencev1.ResilienceService_Acquire_FullMethodName:        config.RoleCaller,
	resiliencev1.ResilienceService_ReportOutcome_FullMethodName:  config.RoleCaller,
	resiliencev1.ResilienceService_BreakerState_FullMethodName:   config.RoleCaller,
	resiliencev1.ResilienceService_ListBreakers_FullMethodName:   config.RoleOperator,
	resiliencev1.ResilienceService_WatchBreakers_FullMethodName:  config.RoleOperator,
	resiliencev1.ResilienceService_ResetBreaker_FullMethodName:   config.RoleOperator,
	resiliencev1.ResilienceService_Release_FullMethodName:        config.RoleCaller,
	resiliencev1.ResilienceService_ReportUpstream_FullMethodName: config.RoleCaller,
	resiliencev1.CacheService_Get_FullMethodName:                 config.RoleCaller,
	resiliencev1.CacheService_Set_FullMethodName:                 config.RoleCaller,
	resiliencev1.CacheService_Delete_FullMethodName:              config.RoleCaller,
	resiliencev1.CacheService_DeletePattern_FullMethodName:       config.RoleOperator,
	resiliencev1.CacheService_GetStats_FullMethodName:            config.RoleOperator,
	resiliencev1.CacheService_WatchInvalidations_FullMethodName:  config.RoleCaller,
	ratelimitv3.RateLimitService_ShouldRateLimit_FullMethodName:  config.RoleEnvoy,
}

// openServices are the services every caller may use without credentials.
var openServices = []string{
	"/grpc.health.v1.Health/",
	"/grpc.reflection.v1.ServerReflection/",
	"/grpc.reflection.v1alpha.ServerReflection/",
}

// requiredRole returns the role method needs, openMethod for open ones,
// and false for a method the table does not know.
func requiredRole(method string) (string, bool) {
	if r, ok := methodRoles[method]; ok {
		return r, true
	}
	for _, s := range openServices {
		if strings.HasPrefix(method, s) {
			return openMethod, true
		}
	}
	return "", false
}

// allowed reports whether p may call a method that needs role: an operator
// may do everything a caller may.
func allowed(p Principal, role string) bool {
	return p.HasRole(role) || (role == config.RoleCaller && p.HasRole(config.RoleOperator))
}

// authenticate finds the principal of ctx under auth: the bearer token of
// the authorization metadata when there is one, else the verified client
// certificate. The error is UNAUTHENTICATED and never contains the token;
// reason says why, for the audit line.
func authenticate(ctx context.Context, auth *config.Auth) (p Principal, reason string, err error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if vals := md.Get("authorization"); len(vals) > 0 {
		if len(vals) > 1 {
			return p, "several authorization values", status.Error(codes.Unauthenticated, "send one authorization header, not several")
		}
		scheme, token, ok := strings.Cut(vals[0], " ")
		if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
			return p, "malformed authorization", status.Error(codes.Unauthenticated, `authorization must be "Bearer <token>"`)
		}
		cp, ok := auth.ByToken(strings.TrimSpace(token))
		if !ok {
			return p, "unknown token", status.Error(codes.Unauthenticated, "unknown bearer token")
		}
		return fromConfig(cp, "token"), "", nil
	}
	id := tlsIdentity(ctx)
	if id == "" {
		return p, "no credentials", status.Error(codes.Unauthenticated, "credentials required: send authorization: Bearer <token>, or a client certificate under mutual TLS")
	}
	cp, ok := auth.ByTLSIdentity(id)
	if !ok {
		return p, "unknown certificate identity " + id, status.Errorf(codes.Unauthenticated, "client certificate identity %q is not a known principal", id)
	}
	return fromConfig(cp, "tls"), "", nil
}

func fromConfig(cp *config.Principal, via string) Principal {
	roles := append([]string{}, cp.Roles...)
	return Principal{Name: cp.Name, Tenant: cp.Tenant, Via: via, roles: roles}
}

// tlsIdentity returns the identity of the verified client certificate of
// ctx's connection ("" without one): its first URI SAN (so SPIFFE IDs
// work), else its first DNS SAN, else its subject CN.
func tlsIdentity(ctx context.Context) string {
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	ti, ok := pr.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return "" // no certificate, or one nothing verified
	}
	return certIdentity(ti.State.VerifiedChains[0][0])
}

// certIdentity is the identity of a client certificate (see tlsIdentity).
func certIdentity(c *x509.Certificate) string {
	switch {
	case len(c.URIs) > 0:
		return c.URIs[0].String()
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	}
	return c.Subject.CommonName
}

// guard is the server's authentication and authorization step, then the
// tenant's request rate. It runs inside the recovery interceptor, so that
// the access log and the metrics record its refusals with their codes.
type guard struct {
	srv *Server
}

// admit returns ctx with the request's principal, or the status refusing
// the call.
func (g guard) admit(ctx context.Context, method string, req any) (context.Context, error) {
	role, known := requiredRole(method)
	if known && role == openMethod {
		return ctx, nil
	}
	cfg := g.srv.Config()
	if cfg.Auth == nil {
		return withPrincipal(ctx, Principal{Via: "none"}), nil
	}
	p, reason, err := authenticate(ctx, cfg.Auth)
	if err != nil {
		g.srv.audit.authFailure(ctx, method, reason)
		return ctx, err
	}
	if !known {
		g.srv.audit.denied(ctx, p, method, req, "method has no role")
		return ctx, status.Errorf(codes.PermissionDenied, "%s is not open to any role", method)
	}
	if !allowed(p, role) {
		g.srv.audit.denied(ctx, p, method, req, "needs role "+role)
		return ctx, status.Error(codes.PermissionDenied, permissionMessage(method, role))
	}
	if err := g.srv.tenantRate.admit(ctx, p.Tenant, cfg.Auth.Limits(p.Tenant)); err != nil {
		return ctx, err
	}
	return withPrincipal(ctx, p), nil
}

func permissionMessage(method, role string) string {
	name := method[strings.LastIndexByte(method, '/')+1:]
	if role == config.RoleCaller {
		return fmt.Sprintf("%s needs the role %q (or %q)", name, role, config.RoleOperator)
	}
	return fmt.Sprintf("%s needs the role %q", name, role)
}

func (g guard) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := g.admit(ctx, info.FullMethod, req)
	if err != nil {
		return nil, err // admit audited it
	}
	resp, err := handler(ctx, req)
	g.srv.audit.call(ctx, info.FullMethod, req, err)
	return resp, err
}

func (g guard) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := g.admit(ss.Context(), info.FullMethod, nil)
	if err != nil {
		return err
	}
	return handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
}
