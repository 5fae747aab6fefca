package server

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/topdeck/resilience/correlation"
)

// correlationFromIncoming returns the caller's correlation id from the
// request metadata, or a fresh one when it is missing or unusable.
func correlationFromIncoming(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(correlation.Header); len(v) > 0 && correlation.Valid(v[0]) {
			return v[0]
		}
	}
	return correlation.New()
}

// unaryCorrelation puts the correlation id in the context and in the
// response header.
func unaryCorrelation(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	id := correlationFromIncoming(ctx)
	_ = grpc.SetHeader(ctx, metadata.Pairs(correlation.Header, id))
	return handler(correlation.NewContext(ctx, id), req)
}

// streamCorrelation is unaryCorrelation for streams.
func streamCorrelation(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	id := correlationFromIncoming(ss.Context())
	_ = ss.SetHeader(metadata.Pairs(correlation.Header, id))
	return handler(srv, &ctxStream{ServerStream: ss, ctx: correlation.NewContext(ss.Context(), id)})
}

// ctxStream is a ServerStream with a replaced context.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

// slogLogger adapts l to the logging interceptor.
func slogLogger(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}

// loggingOptions log one line per finished RPC with its method, code,
// duration and correlation id.
func loggingOptions() []logging.Option {
	return []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithFieldsFromContext(func(ctx context.Context) logging.Fields {
			f := logging.Fields{"correlation_id", correlation.FromContext(ctx)}
			if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
				f = append(f, "trace_id", sc.TraceID().String())
			}
			return f
		}),
		logging.WithDurationField(logging.DurationToTimeMillisFields),
	}
}

// recoveryHandler turns a panic into INTERNAL and logs it with its stack, so
// that a bug in one request never takes the process down.
func recoveryHandler(l *slog.Logger) recovery.Option {
	return recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		l.ErrorContext(ctx, "panic in handler",
			"panic", fmt.Sprint(p),
			"stack", string(debug.Stack()),
			"correlation_id", correlation.FromContext(ctx))
		return status.Error(codes.Internal, "internal error")
	})
}

// interceptors returns the server's interceptor chain, outermost first:
// correlation id, metrics (when m is not nil), logging, panic recovery.
func interceptors(l *slog.Logger, m *Metrics) []grpc.ServerOption {
	lg := slogLogger(l)
	unary := []grpc.UnaryServerInterceptor{unaryCorrelation}
	stream := []grpc.StreamServerInterceptor{streamCorrelation}
	if m != nil {
		unary = append(unary, m.grpc.UnaryServerInterceptor())
		stream = append(stream, m.grpc.StreamServerInterceptor())
	}
	unary = append(unary,
		logging.UnaryServerInterceptor(lg, loggingOptions()...),
		recovery.UnaryServerInterceptor(recoveryHandler(l)))
	stream = append(stream,
		logging.StreamServerInterceptor(lg, loggingOptions()...),
		recovery.StreamServerInterceptor(recoveryHandler(l)))
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...)}
}
