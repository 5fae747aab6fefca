package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/topdeck/resilience/config"
	"github.com/topdeck/resilience/server"
)

// SecurityFlags are the settings of protected defaults and transport limits.
type SecurityFlags struct {
	// Insecure allows listening on a non-loopback address without an auth
	// section and without TLS (anyone who reaches the port may do
	// anything), and serving pprof on one.
	Insecure bool
	// NoReflection turns gRPC server reflection off.
	NoReflection bool
	// AuditLog is the file the audit lines are appended to ("": stdout).
	AuditLog string
	// MaxWatchStreams bounds the open WatchBreakers streams of the replica.
	MaxWatchStreams int
	// Transport limits; zero values take server.DefaultTransport's.
	MaxConcurrentStreams  uint
	ConnectionTimeout     time.Duration
	MaxConnectionIdle     time.Duration
	KeepaliveTime         time.Duration
	KeepaliveTimeout      time.Duration
	MinClientPingInterval time.Duration
}

var securityEnvVars = []env{
	{"insecure", "RESILIENCE_INSECURE"},
	{"reflection", "RESILIENCE_REFLECTION"},
	{"audit-log", "RESILIENCE_AUDIT_LOG"},
	{"max-watch-streams", "RESILIENCE_MAX_WATCH_STREAMS"},
	{"max-concurrent-streams", "RESILIENCE_MAX_CONCURRENT_STREAMS"},
	{"connection-timeout", "RESILIENCE_CONNECTION_TIMEOUT"},
	{"max-connection-idle", "RESILIENCE_MAX_CONNECTION_IDLE"},
	{"keepalive-time", "RESILIENCE_KEEPALIVE_TIME"},
	{"keepalive-timeout", "RESILIENCE_KEEPALIVE_TIMEOUT"},
	{"min-client-ping-interval", "RESILIENCE_MIN_CLIENT_PING_INTERVAL"},
}

// register adds the security flags to fs.
func (s *SecurityFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&s.Insecure, "insecure", false, "allow a non-loopback --listen or --metrics-listen without an auth: section and without TLS (anyone who reaches the port may do anything), and --pprof on a non-loopback address (env RESILIENCE_INSECURE)")
	fs.BoolFunc("reflection", "serve gRPC server reflection, open to every caller: true (default) or false (env RESILIENCE_REFLECTION)", func(v string) error {
		switch strings.ToLower(v) {
		case "true", "1", "on":
			s.NoReflection = false
		case "false", "0", "off":
			s.NoReflection = true
		default:
			return fmt.Errorf("want true or false, got %q", v)
		}
		return nil
	})
	fs.StringVar(&s.AuditLog, "audit-log", "", "append the JSON audit lines to this `file` (default: stdout, with the other logs) (env RESILIENCE_AUDIT_LOG)")
	fs.IntVar(&s.MaxWatchStreams, "max-watch-streams", server.DefaultMaxWatchStreams, "open WatchBreakers streams per replica, all tenants together (each tenant also has auth max_watch_streams) (env RESILIENCE_MAX_WATCH_STREAMS)")
	fs.UintVar(&s.MaxConcurrentStreams, "max-concurrent-streams", server.DefaultMaxConcurrentStreams, "calls in flight per client connection (env RESILIENCE_MAX_CONCURRENT_STREAMS)")
	fs.DurationVar(&s.ConnectionTimeout, "connection-timeout", server.DefaultConnectionTimeout, "bound on a new connection's TLS and HTTP/2 handshake (env RESILIENCE_CONNECTION_TIMEOUT)")
	fs.DurationVar(&s.MaxConnectionIdle, "max-connection-idle", server.DefaultMaxConnectionIdle, "close connections without calls for this long (env RESILIENCE_MAX_CONNECTION_IDLE)")
	fs.DurationVar(&s.KeepaliveTime, "keepalive-time", server.DefaultKeepaliveTime, "ping a connection silent for this long (env RESILIENCE_KEEPALIVE_TIME)")
	fs.DurationVar(&s.KeepaliveTimeout, "keepalive-timeout", server.DefaultKeepaliveTimeout, "close a connection whose ping is unanswered after this long (env RESILIENCE_KEEPALIVE_TIMEOUT)")
	fs.DurationVar(&s.MinClientPingInterval, "min-client-ping-interval", server.DefaultMinClientPingInterval, "disconnect clients that ping more often than this (env RESILIENCE_MIN_CLIENT_PING_INTERVAL)")
}

// check validates the security flags.
func (s *SecurityFlags) check() error {
	if s.MaxWatchStreams < 0 {
		return fmt.Errorf("%w: --max-watch-streams must not be negative", errUsage)
	}
	if s.MaxConcurrentStreams == 0 || s.MaxConcurrentStreams > 1<<31 {
		return fmt.Errorf("%w: --max-concurrent-streams must be 1 to 2147483648", errUsage)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"connection-timeout", s.ConnectionTimeout}, {"max-connection-idle", s.MaxConnectionIdle},
		{"keepalive-time", s.KeepaliveTime}, {"keepalive-timeout", s.KeepaliveTimeout},
		{"min-client-ping-interval", s.MinClientPingInterval},
	} {
		if d.v <= 0 {
			return fmt.Errorf("%w: --%s must be > 0", errUsage, d.name)
		}
	}
	return nil
}

// transport returns the transport limits of the flags for cfg.
func (s *SecurityFlags) transport(cfg *config.Config) server.Transport {
	return server.Transport{
		MaxRecvMsgBytes:       cfg.MaxRecvMessageBytes(),
		MaxConcurrentStreams:  uint32(s.MaxConcurrentStreams),
		ConnectionTimeout:     s.ConnectionTimeout,
		MaxConnectionIdle:     s.MaxConnectionIdle,
		KeepaliveTime:         s.KeepaliveTime,
		KeepaliveTimeout:      s.KeepaliveTimeout,
		MinClientPingInterval: s.MinClientPingInterval,
	}
}

// errExposed is the refusal to serve an open server beyond loopback.
var errExposed = errors.New("refusing to listen")

// howToSecure tells the operator what to do about errExposed.
const howToSecure = "configure principals in an auth: section of --config (see docs/security.md: token_sha256 is `printf %s \"$TOKEN\" | sha256sum`), " +
	"or serve TLS (--tls-cert/--tls-key, with --tls-client-ca for mutual TLS), or listen on loopback (127.0.0.1:50051); " +
	"--insecure (RESILIENCE_INSECURE=true) accepts the risk"

// checkExposure refuses, before anything listens, a server that anyone on
// the network could use: a non-loopback gRPC or metrics address with no
// auth section and no TLS, unless --insecure; and pprof on a non-loopback
// address unless --insecure (profiles reveal the process's internals).
func checkExposure(f Flags, cfg *config.Config) error {
	if f.Security.Insecure {
		return nil
	}
	open := cfg.Auth == nil && f.TLSCert == ""
	if open && !isLoopback(f.Listen) {
		return fmt.Errorf("%w on --listen %s: no auth: section and no TLS, so anyone who reaches it may reset breakers and wipe the cache; %s", errExposed, f.Listen, howToSecure)
	}
	if f.MetricsListen != "" && !isLoopback(f.MetricsListen) {
		if open {
			return fmt.Errorf("%w on --metrics-listen %s: no auth: section and no TLS; listen on 127.0.0.1:9090, or %s", errExposed, f.MetricsListen, howToSecure)
		}
		if f.Pprof {
			return fmt.Errorf("%w: --pprof on the non-loopback --metrics-listen %s exposes the process's internals without authentication; use a loopback --metrics-listen or --insecure", errExposed, f.MetricsListen)
		}
	}
	return nil
}

// isLoopback reports whether the listen address addr binds loopback only:
// "localhost" or a loopback IP. An empty host binds every interface.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// auditLogger returns the logger of the audit lines: JSON at info whatever
// --log-level and --log-format say, on stdout or appended to --audit-log.
func auditLogger(stdout io.Writer, path string) (*slog.Logger, io.Closer, error) {
	w, c := stdout, io.Closer(nil)
	if path != "" {
		fl, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("--audit-log: %w", err)
		}
		w, c = fl, fl
	}
	l := slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return l.With("log", "audit"), c, nil
}

// checkReload refuses a reloaded configuration the running server cannot
// take safely: removing the auth section (it would open every method to
// anyone; restart to do it) or a cache.max_value_bytes the transport,
// sized at start, cannot carry.
func checkReload(srv *server.Server, next *config.Config) error {
	cur := srv.Config()
	if cur.Auth != nil && next.Auth == nil {
		return errors.New("config: auth: removing the auth section would let anyone call every method; it needs a restart")
	}
	if need := next.MaxRecvMessageBytes(); need > srv.MaxRecvMsgBytes() {
		return fmt.Errorf("config: cache.max_value_bytes: %d needs gRPC messages of %d bytes, above the %d this server was started with; it needs a restart", next.Cache.MaxValueBytes, need, srv.MaxRecvMsgBytes())
	}
	return nil
}
