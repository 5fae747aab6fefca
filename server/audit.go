package server

import (
	"context"
	"log/slog"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/topdeck/resilience/correlation"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

// auditor writes the audit trail: one JSON line (message "audit") per
// ResetBreaker, DeletePattern, authentication failure, refused permission
// and configuration reload, and the metric
// resilience_audit_events_total{method,result}. Lines carry principal,
// tenant, method, target, result and correlation_id; never a token. Labels
// are bounded: method is an RPC name of this server or "ConfigReload",
// result "ok", "rejected" or a gRPC code name.
//
// The zero value logs nothing; it is safe for concurrent use.
type auditor struct {
	log     *slog.Logger // nil: no lines
	metrics *Metrics     // nil: no metric
}

// auditedMethods are the calls audited whatever their outcome (besides
// refusals, which are audited for every method).
var auditedMethods = map[string]bool{
	resiliencev1.ResilienceService_ResetBreaker_FullMethodName: true,
	resiliencev1.CacheService_DeletePattern_FullMethodName:     true,
}

// AuditReload is the method of a configuration reload's audit line.
const AuditReload = "ConfigReload"

// event is one audit record.
type event struct {
	principal, tenant, via string
	method, target, result string
	reason                 string
}

func (a *auditor) write(ctx context.Context, e event) {
	if a == nil {
		return
	}
	if a.metrics != nil {
		a.metrics.observeAudit(e.method, e.result)
	}
	if a.log == nil {
		return
	}
	attrs := []slog.Attr{
		slog.String("principal", e.principal),
		slog.String("tenant", e.tenant),
		slog.String("method", e.method),
		slog.String("target", e.target),
		slog.String("result", e.result),
		slog.String("correlation_id", correlation.FromContext(ctx)),
	}
	if e.via != "" {
		attrs = append(attrs, slog.String("credential", e.via))
	}
	if e.reason != "" {
		attrs = append(attrs, slog.String("reason", e.reason))
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "audit", attrs...)
}

// shortMethod is the RPC name of a full method ("/pkg.Service/Method").
func shortMethod(full string) string { return full[strings.LastIndexByte(full, '/')+1:] }

// resultOf is the result label of err.
func resultOf(err error) string {
	c := status.Code(err)
	if c == codes.OK {
		return "ok"
	}
	return strings.ToLower(strcase(c.String()))
}

// strcase turns a code name ("PermissionDenied") into snake case
// ("Permission_Denied"); resultOf lowers it.
func strcase(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// target is what an audited request acts on: a breaker name or a pattern.
func target(req any) string {
	switch r := req.(type) {
	case *resiliencev1.ResetBreakerRequest:
		return r.GetBreaker()
	case *resiliencev1.DeletePatternRequest:
		return r.GetPattern()
	}
	return ""
}

// authFailure audits a request refused as UNAUTHENTICATED.
func (a *auditor) authFailure(ctx context.Context, method, reason string) {
	a.write(ctx, event{method: shortMethod(method), result: "unauthenticated", reason: reason})
}

// denied audits a request of p refused as PERMISSION_DENIED.
func (a *auditor) denied(ctx context.Context, p Principal, method string, req any, reason string) {
	a.write(ctx, event{principal: p.Name, tenant: p.Tenant, via: p.Via, method: shortMethod(method),
		target: target(req), result: "permission_denied", reason: reason})
}

// call audits an admitted call of an audited method with its outcome.
func (a *auditor) call(ctx context.Context, method string, req any, err error) {
	if !auditedMethods[method] {
		return
	}
	p, _ := PrincipalFromContext(ctx)
	e := event{principal: p.Name, tenant: p.Tenant, via: p.Via, method: shortMethod(method), target: target(req), result: resultOf(err)}
	if err != nil {
		e.reason = status.Convert(err).Message()
	}
	a.write(ctx, e)
}

// AuditReload writes the audit line of a configuration reload of path: ok,
// or rejected with the reason (the running configuration stays).
func (s *Server) AuditReload(path string, err error) {
	e := event{principal: "config-file", method: AuditReload, target: path, result: "ok"}
	if err != nil {
		e.result, e.reason = "rejected", err.Error()
	}
	s.audit.write(correlation.NewContext(context.Background(), correlation.New()), e)
}
