package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/topdeck/resilience/internal/redisconn"
)

// opsServer is the operators' HTTP endpoint: /metrics, /healthz, /readyz
// and, when enabled, /debug/pprof/.
type opsServer struct {
	http *http.Server
	lis  net.Listener
	log  *slog.Logger
}

// newOpsServer listens on addr. ready reports whether the gRPC server takes
// calls (for /readyz).
func newOpsServer(addr string, reg *prometheus.Registry, ready func() bool, withPprof bool, log *slog.Logger) (*opsServer, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", redactedCmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &opsServer{
		http: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		lis:  lis,
		log:  log,
	}, nil
}

// Run serves until Close.
func (o *opsServer) Run() {
	if err := o.http.Serve(o.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		o.log.Error("metrics server stopped", "error", err.Error())
	}
}

// Close stops the server, letting scrapes in progress finish within ctx.
func (o *opsServer) Close(ctx context.Context) { _ = o.http.Shutdown(ctx) }

// redactedCmdline is pprof.Cmdline with Redis passwords redacted: the
// command line may carry --redis-url with its credentials.
func redactedCmdline(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	args := make([]string, len(os.Args))
	for i, a := range os.Args {
		args[i] = redisconn.Redact(a)
	}
	_, _ = io.WriteString(w, strings.Join(args, "\x00"))
}
