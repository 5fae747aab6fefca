package server

import (
	"cmp"
	"log/slog"
	"math"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/topdeck/resilience/config"
	"github.com/topdeck/resilience/internal/defaults"
)

// Transport are the gRPC transport limits of the server. Every field has a
// default (DefaultTransport); a zero field means that default.
type Transport struct {
	// MaxRecvMsgBytes is the largest message the server reads; a larger one
	// is refused with RESOURCE_EXHAUSTED before it is decoded (default:
	// cache.max_value_bytes plus config.MessageHeadroom).
	MaxRecvMsgBytes int
	// MaxConcurrentStreams bounds the calls in flight on one connection
	// (default 1024); further calls wait for a free stream on the client.
	MaxConcurrentStreams uint32
	// ConnectionTimeout bounds the TLS and HTTP/2 handshake of a new
	// connection (default 10s).
	ConnectionTimeout time.Duration
	// MaxConnectionIdle closes a connection without calls for this long
	// (default 15m); clients reconnect on their next call.
	MaxConnectionIdle time.Duration
	// KeepaliveTime is how long a connection may be silent before the
	// server pings it (default 1m), and KeepaliveTimeout how long it waits
	// for the answer before closing it (default 20s).
	KeepaliveTime, KeepaliveTimeout time.Duration
	// MinClientPingInterval is the shortest interval at which clients may
	// ping; faster pingers are disconnected (default 10s). Pings without
	// calls in flight are allowed.
	MinClientPingInterval time.Duration
}

// Defaults of Transport.
const (
	DefaultMaxConcurrentStreams  = 1024
	DefaultConnectionTimeout     = 10 * time.Second
	DefaultMaxConnectionIdle     = 15 * time.Minute
	DefaultKeepaliveTime         = time.Minute
	DefaultKeepaliveTimeout      = 20 * time.Second
	DefaultMinClientPingInterval = 10 * time.Second
	// DefaultMaxWatchStreams bounds the WatchBreakers streams open on one
	// replica, all tenants together (each holds a store subscription).
	DefaultMaxWatchStreams = 256
)

// DefaultTransport returns the transport limits for cfg: the defaults, with
// the message bound that carries cache.max_value_bytes.
func DefaultTransport(cfg *config.Config) Transport {
	return Transport{MaxRecvMsgBytes: cfg.MaxRecvMessageBytes()}.withDefaults()
}

func (t Transport) withDefaults() Transport {
	t.MaxRecvMsgBytes = defaults.Positive(t.MaxRecvMsgBytes, config.DefaultMaxValueBytes+config.MessageHeadroom)
	t.MaxConcurrentStreams = cmp.Or(t.MaxConcurrentStreams, DefaultMaxConcurrentStreams)
	t.ConnectionTimeout = defaults.Positive(t.ConnectionTimeout, DefaultConnectionTimeout)
	t.MaxConnectionIdle = defaults.Positive(t.MaxConnectionIdle, DefaultMaxConnectionIdle)
	t.KeepaliveTime = defaults.Positive(t.KeepaliveTime, DefaultKeepaliveTime)
	t.KeepaliveTimeout = defaults.Positive(t.KeepaliveTimeout, DefaultKeepaliveTimeout)
	t.MinClientPingInterval = defaults.Positive(t.MinClientPingInterval, DefaultMinClientPingInterval)
	return t
}

func (t Transport) serverOptions() []grpc.ServerOption {
	t = t.withDefaults()
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(min(t.MaxRecvMsgBytes, math.MaxInt32)),
		grpc.MaxConcurrentStreams(t.MaxConcurrentStreams),
		grpc.ConnectionTimeout(t.ConnectionTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: t.MaxConnectionIdle,
			Time:              t.KeepaliveTime,
			Timeout:           t.KeepaliveTimeout,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             t.MinClientPingInterval,
			PermitWithoutStream: true,
		}),
	}
}

// MaxRecvMsgBytes returns the largest message the server reads: a reload
// whose cache.max_value_bytes needs more is refused (see CheckReload).
func (s *Server) MaxRecvMsgBytes() int { return s.transport.MaxRecvMsgBytes }

// WithTenants serves the principals' tenants on t (default: none; a
// principal with a tenant is then refused with INTERNAL).
func WithTenants(t *Tenants) Option { return func(o *options) { o.tenants = t } }

// WithAuditLogger writes the audit lines to l (default: the server's
// logger). Give it a JSON handler at info level, whatever the log level.
func WithAuditLogger(l *slog.Logger) Option { return func(o *options) { o.auditLog = l } }

// WithoutReflection does not register gRPC server reflection (default: it
// is registered, and open to every caller).
func WithoutReflection() Option { return func(o *options) { o.noReflection = true } }

// WithMaxWatchStreams bounds the open WatchBreakers streams of the replica
// (default DefaultMaxWatchStreams; n < 0 removes the bound).
func WithMaxWatchStreams(n int) Option { return func(o *options) { o.maxWatches = n } }

// WithTransport sets the gRPC transport limits (default DefaultTransport of
// the configuration); zero fields take their defaults.
func WithTransport(t Transport) Option {
	return func(o *options) { o.transport = t }
}
