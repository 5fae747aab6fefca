package server

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/topdeck/resilience/correlation"
)

// InvalidCorrelationHeader is the response header that says why the caller's
// x-correlation-id was not used (a fresh id replaced it): the call itself
// goes on, since a tracing header must never fail a rate-limit decision.
const InvalidCorrelationHeader = "x-correlation-id-invalid"

// correlationFromIncoming returns the caller's correlation id from the
// request metadata, or a fresh one when it is missing or unusable; header
// holds the response headers to send: the id, and why the caller's was
// refused if it was.
//
// It runs on every call: ValueFromIncomingContext reads the one key where
// FromIncomingContext would copy the whole metadata, and the headers are
// built as the lower-case map that metadata.Pairs would make.
func correlationFromIncoming(ctx context.Context) (id string, header metadata.MD) {
	if v := metadata.ValueFromIncomingContext(ctx, correlation.Header); len(v) > 0 {
		if correlation.Valid(v[0]) {
			return v[0], metadata.MD{correlation.Header: {v[0]}}
		}
		id = correlation.New()
		return id, metadata.MD{correlation.Header: {id}, InvalidCorrelationHeader: {correlation.Rule}}
	}
	id = correlation.New()
	return id, metadata.MD{correlation.Header: {id}}
}

// unaryCorrelation puts the correlation id in the context and in the
// response header.
func unaryCorrelation(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	id, hdr := correlationFromIncoming(ctx)
	_ = grpc.SetHeader(ctx, hdr)
	return handler(correlation.NewContext(ctx, id), req)
}

// streamCorrelation is unaryCorrelation for streams.
func streamCorrelation(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	id, hdr := correlationFromIncoming(ss.Context())
	_ = ss.SetHeader(hdr)
	return handler(srv, &ctxStream{ServerStream: ss, ctx: correlation.NewContext(ss.Context(), id)})
}

// ctxStream is a ServerStream with a replaced context.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

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
	al := accessLog{l: l}
	unary := []grpc.UnaryServerInterceptor{unaryCorrelation}
	stream := []grpc.StreamServerInterceptor{streamCorrelation}
	if m != nil {
		unary = append(unary, m.grpc.UnaryServerInterceptor())
		stream = append(stream, m.grpc.StreamServerInterceptor())
	}
	unary = append(unary,
		al.unary,
		recovery.UnaryServerInterceptor(recoveryHandler(l)))
	stream = append(stream,
		al.stream,
		recovery.StreamServerInterceptor(recoveryHandler(l)))
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...)}
}
