package server

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/topdeck/resilience/correlation"
)

// SlowCall is the duration above which a call that succeeded is still
// logged at info (as "slow call"), whatever its method.
const SlowCall = 250 * time.Millisecond

// accessLog writes one JSON line per finished RPC, at a level chosen so that
// the default (info) log costs nothing on the hot path:
//
//   - a call that failed with a server-side code (Internal, Unknown,
//     Unavailable, DataLoss, DeadlineExceeded) at warn, any other error at
//     info;
//   - the operators' methods (ListBreakers, WatchBreakers, ResetBreaker,
//     DeletePattern, GetStats and anything outside the hot path) at info;
//   - a successful hot-path call (Acquire, ReportOutcome, BreakerState,
//     cache Get, Set and Delete, Envoy's ShouldRateLimit, health checks) at
//     debug, unless it took longer than SlowCall (then info).
//
// A line the logger would drop is never built. The line carries
// grpc.service, grpc.method, grpc.method_type, grpc.code, grpc.time_ms (a
// number), correlation_id, trace_id when tracing is on, peer.address and, on
// an error, grpc.error. It is safe for concurrent use.
type accessLog struct {
	l *slog.Logger
}

// hotMethods are the methods logged at debug when they succeed quickly.
var hotMethods = map[string]bool{
	"Acquire": true, "ReportOutcome": true, "BreakerState": true,
	"Get": true, "Set": true, "Delete": true,
	"ShouldRateLimit": true, "Check": true,
}

// level is the level of a call's line.
func (a accessLog) level(method string, code codes.Code, took time.Duration) slog.Level {
	switch code {
	case codes.OK:
		if hotMethods[method] && took <= SlowCall {
			return slog.LevelDebug
		}
		return slog.LevelInfo
	case codes.Internal, codes.Unknown, codes.Unavailable, codes.DataLoss, codes.DeadlineExceeded:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

func (a accessLog) log(ctx context.Context, fullMethod, kind string, err error, took time.Duration) {
	service, method := splitMethod(fullMethod)
	code := status.Code(err)
	lvl := a.level(method, code, took)
	if !a.l.Enabled(ctx, lvl) {
		return
	}
	msg := "finished call"
	if code == codes.OK && took > SlowCall {
		msg = "slow call"
	}
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs,
		slog.String("grpc.service", service),
		slog.String("grpc.method", method),
		slog.String("grpc.method_type", kind),
		slog.String("grpc.code", code.String()),
		slog.Float64("grpc.time_ms", float64(took.Microseconds())/1000),
		slog.String("correlation_id", correlation.FromContext(ctx)),
	)
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		attrs = append(attrs, slog.String("peer.address", p.Addr.String()))
	}
	if err != nil {
		attrs = append(attrs, slog.String("grpc.error", status.Convert(err).Message()))
	}
	a.l.LogAttrs(ctx, lvl, msg, attrs...)
}

// splitMethod splits "/pkg.Service/Method" into its service and method.
func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "unknown", full
}

func (a accessLog) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	a.log(ctx, info.FullMethod, "unary", err, time.Since(start))
	return resp, err
}

func (a accessLog) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	kind := "server_stream"
	if info.IsClientStream {
		kind = "bidi_stream"
		if !info.IsServerStream {
			kind = "client_stream"
		}
	}
	a.log(ss.Context(), info.FullMethod, kind, err, time.Since(start))
	return err
}
