package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/topdeck/resilience/internal/cliflag"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/topdeck/resilience/config"
	"github.com/topdeck/resilience/internal/redisconn"
	"github.com/topdeck/resilience/internal/tlsconfig"
	"github.com/topdeck/resilience/server"
)

// errUsage marks errors in the command line or environment (exit code 2).
var errUsage = cliflag.ErrUsage

// Flags are resilienced's settings, from flags or their environment variables.
type Flags struct {
	Listen          string
	RedisURL        string
	ConfigPath      string
	LogLevel        string
	LogFormat       string
	ShutdownTimeout time.Duration
	// MetricsListen is the HTTP address of /metrics, /healthz, /readyz
	// ("" disables it).
	MetricsListen string
	// Pprof adds /debug/pprof/ to the metrics endpoint.
	Pprof bool
	// TLSCert and TLSKey, when set, make the gRPC port TLS-only.
	TLSCert, TLSKey string
	// TLSClientCA, when set, requires client certificates signed by it.
	TLSClientCA string
	// CacheRedisURL, when set, gives the cache its own Redis, so that cache
	// pressure can never evict rate-limit or breaker keys.
	CacheRedisURL string
	// RedisEviction says what to do when the limits Redis may evict keys:
	// EvictionWarn or EvictionRefuse.
	RedisEviction string
	// HealthProbe makes the process check the gRPC health of a server
	// listening on Listen and exit, for container HEALTHCHECKs.
	HealthProbe bool
	// RedisTimeouts bound each Redis dial and reply (zero fields: the
	// redisconn defaults, 100 ms and 200 ms).
	RedisTimeouts redisconn.Timeouts
	// Security are the protected defaults and transport limits.
	Security SecurityFlags
}

// Main runs the server. Its zero value is not usable; create it with NewMain.
type Main struct {
	stdout, stderr io.Writer
}

// NewMain returns a Main that writes logs to stdout and usage to stderr.
func NewMain(stdout, stderr io.Writer) *Main { return &Main{stdout: stdout, stderr: stderr} }

// env is one flag's environment variable.
type env struct{ flag, name string }

var envVars = []env{
	{"listen", "RESILIENCE_LISTEN"},
	{"redis-url", "RESILIENCE_REDIS_URL"},
	{"cache-redis-url", "RESILIENCE_CACHE_REDIS_URL"},
	{"redis-eviction", "RESILIENCE_REDIS_EVICTION"},
	{"redis-dial-timeout", "RESILIENCE_REDIS_DIAL_TIMEOUT"},
	{"redis-read-timeout", "RESILIENCE_REDIS_READ_TIMEOUT"},
	{"config", "RESILIENCE_CONFIG"},
	{"log-level", "RESILIENCE_LOG_LEVEL"},
	{"log-format", "RESILIENCE_LOG_FORMAT"},
	{"shutdown-timeout", "RESILIENCE_SHUTDOWN_TIMEOUT"},
	{"metrics-listen", "RESILIENCE_METRICS_LISTEN"},
	{"pprof", "RESILIENCE_PPROF"},
	{"tls-cert", "RESILIENCE_TLS_CERT"},
	{"tls-key", "RESILIENCE_TLS_KEY"},
	{"tls-client-ca", "RESILIENCE_TLS_CLIENT_CA"},
}

// ParseFlags reads args, with environment variables as defaults. A flag on
// the command line wins over its variable.
func (m *Main) ParseFlags(args []string, getenv func(string) string) (Flags, error) {
	var f Flags
	fs := flag.NewFlagSet("resilienced", flag.ContinueOnError)
	fs.SetOutput(m.stderr)
	fs.StringVar(&f.Listen, "listen", "127.0.0.1:50051", "gRPC listen address; a non-loopback one needs an auth: section or TLS, or --insecure (env RESILIENCE_LISTEN)")
	fs.StringVar(&f.RedisURL, "redis-url", "", "Redis URL: redis://host:port/db, rediss:// for TLS, ?addr=h2:p2&addr=... for Cluster, ?master_name=NAME&addr=... for Sentinel; empty: embedded in-memory store, one replica only (env RESILIENCE_REDIS_URL)")
	fs.StringVar(&f.CacheRedisURL, "cache-redis-url", "", "Redis URL of the cache alone (same forms as --redis-url); empty = the cache shares --redis-url. Give the cache its own Redis so that cache pressure never evicts limits (env RESILIENCE_CACHE_REDIS_URL)")
	fs.StringVar(&f.RedisEviction, "redis-eviction", EvictionWarn, "when the --redis-url Redis may evict keys (maxmemory-policy other than noeviction): warn (log an error, resilience_store_evictable 1) or refuse (exit at start, unhealthy store at run time) (env RESILIENCE_REDIS_EVICTION)")
	fs.DurationVar(&f.RedisTimeouts.Dial, "redis-dial-timeout", redisconn.DefaultTimeouts.Dial, "bound on connecting to Redis; a dead Redis fails a call within it (env RESILIENCE_REDIS_DIAL_TIMEOUT)")
	fs.DurationVar(&f.RedisTimeouts.Read, "redis-read-timeout", redisconn.DefaultTimeouts.Read, "bound on each Redis reply (and write, and pool wait); a hung Redis fails a call within it (env RESILIENCE_REDIS_READ_TIMEOUT)")
	fs.StringVar(&f.ConfigPath, "config", "", "YAML configuration file (env RESILIENCE_CONFIG)")
	fs.StringVar(&f.LogLevel, "log-level", "info", "debug, info, warn or error (env RESILIENCE_LOG_LEVEL)")
	fs.StringVar(&f.LogFormat, "log-format", "json", "json or text (env RESILIENCE_LOG_FORMAT)")
	fs.DurationVar(&f.ShutdownTimeout, "shutdown-timeout", server.DefaultShutdownTimeout, "how long in-flight calls may finish on SIGTERM (env RESILIENCE_SHUTDOWN_TIMEOUT)")
	fs.StringVar(&f.MetricsListen, "metrics-listen", "127.0.0.1:9090", "HTTP address of /metrics, /healthz and /readyz; empty disables it; a non-loopback one follows the rule of --listen (env RESILIENCE_METRICS_LISTEN)")
	fs.BoolVar(&f.Pprof, "pprof", false, "serve /debug/pprof/ on --metrics-listen (env RESILIENCE_PPROF)")
	fs.StringVar(&f.TLSCert, "tls-cert", "", "PEM certificate (chain) of the gRPC port; with --tls-key, the port speaks TLS only; re-read when the file changes (env RESILIENCE_TLS_CERT)")
	fs.StringVar(&f.TLSKey, "tls-key", "", "PEM private key of --tls-cert (env RESILIENCE_TLS_KEY)")
	fs.StringVar(&f.TLSClientCA, "tls-client-ca", "", "PEM CA certificates; clients must present a certificate they signed (mutual TLS) (env RESILIENCE_TLS_CLIENT_CA)")
	fs.BoolVar(&f.HealthProbe, "health-probe", false, "check the health of the server on --listen (exit 0 when SERVING, 1 otherwise) and exit; for container HEALTHCHECKs")
	f.Security.register(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: resilienced [flags]\n\nThe TopDeck resilience service (gRPC).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	for _, e := range append(envVars, securityEnvVars...) {
		if v := getenv(e.name); v != "" {
			if err := fs.Set(e.flag, v); err != nil {
				return f, fmt.Errorf("%w: %s=%q: %v", errUsage, e.name, v, err)
			}
		}
	}
	if err := cliflag.Parse(fs, args); err != nil {
		return f, err
	}
	if err := f.Security.check(); err != nil {
		return f, err
	}
	if f.ShutdownTimeout <= 0 {
		return f, fmt.Errorf("%w: --shutdown-timeout must be > 0", errUsage)
	}
	if (f.TLSCert == "") != (f.TLSKey == "") {
		return f, fmt.Errorf("%w: --tls-cert and --tls-key go together", errUsage)
	}
	if f.RedisTimeouts.Dial <= 0 || f.RedisTimeouts.Read <= 0 {
		return f, fmt.Errorf("%w: --redis-dial-timeout and --redis-read-timeout must be > 0", errUsage)
	}
	f.RedisTimeouts.Write, f.RedisTimeouts.Pool = f.RedisTimeouts.Read, f.RedisTimeouts.Read
	if f.RedisEviction != EvictionWarn && f.RedisEviction != EvictionRefuse {
		return f, fmt.Errorf("%w: --redis-eviction %q: want %s or %s", errUsage, f.RedisEviction, EvictionWarn, EvictionRefuse)
	}
	if f.CacheRedisURL != "" && f.RedisURL == "" {
		return f, fmt.Errorf("%w: --cache-redis-url needs --redis-url (without it every store is the embedded one)", errUsage)
	}
	if f.TLSClientCA != "" && f.TLSCert == "" {
		return f, fmt.Errorf("%w: --tls-client-ca needs --tls-cert and --tls-key", errUsage)
	}
	return f, nil
}

// newLogger builds the process logger from --log-level and --log-format.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("%w: --log-format %q: want json or text", errUsage, format)
	}
}

// Run starts the server and blocks until ctx is cancelled (SIGTERM/SIGINT),
// then shuts down: health NOT_SERVING, in-flight calls drained within
// --shutdown-timeout, then Redis closed.
func (m *Main) Run(ctx context.Context, args []string) error {
	f, err := m.ParseFlags(args, os.Getenv)
	if err != nil {
		return err
	}
	if f.HealthProbe {
		return probeHealth(ctx, f)
	}
	log, err := newLogger(m.stdout, f.LogLevel, f.LogFormat)
	if err != nil {
		return err
	}
	cfg := config.Default()
	var cfgData []byte
	if f.ConfigPath != "" {
		if cfgData, err = os.ReadFile(f.ConfigPath); err != nil {
			return fmt.Errorf("config: %w", err)
		}
		if cfg, err = config.Parse(f.ConfigPath, cfgData); err != nil {
			return err
		}
	}
	if err := checkExposure(f, cfg); err != nil {
		return err
	}
	audit, auditFile, err := auditLogger(m.stdout, f.Security.AuditLog)
	if err != nil {
		return err
	}
	if auditFile != nil {
		defer auditFile.Close()
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := server.NewMetrics(reg)

	var tp *sdktrace.TracerProvider
	if tracingEnabled(os.Getenv) {
		if tp, err = newTracerProvider(ctx, log); err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = tp.Shutdown(sctx)
		}()
	}

	// go-redis logs through the process logger, never as plain text.
	redis.SetLogger(redisLogger{log})
	var (
		rdb, cacheRDB redis.UniversalClient
		kind          = redisconn.Kind("memory")
	)
	openRedis := func(flag, url string) (redis.UniversalClient, redisconn.Kind, error) {
		c, k, err := redisconn.Open(url, f.RedisTimeouts)
		if err != nil {
			return nil, "", fmt.Errorf("%w: --%s: %v", errUsage, flag, err)
		}
		c.AddHook(metrics.RedisHook())
		if tp != nil {
			if err := redisotel.InstrumentTracing(c, redisotel.WithTracerProvider(tp)); err != nil {
				c.Close()
				return nil, "", fmt.Errorf("redis tracing: %w", err)
			}
		}
		return c, k, nil
	}
	if f.RedisURL != "" {
		if rdb, kind, err = openRedis("redis-url", f.RedisURL); err != nil {
			return err
		}
		defer rdb.Close()
	}
	if f.CacheRedisURL != "" {
		if cacheRDB, _, err = openRedis("cache-redis-url", f.CacheRedisURL); err != nil {
			return err
		}
		defer cacheRDB.Close()
	}

	// The composition root: the stores are built here, on the clients this
	// process owns, and the server receives them as interfaces. Every tenant
	// of the auth section gets backends of its own, in its own key space,
	// on the same clients (see server.Tenants).
	build := storeClients{limits: rdb, cache: cacheRDB}.builder(log, server.WithBackendMetrics(metrics))
	backends, err := build(cfg)
	if err != nil {
		return err
	}
	defer backends.Close()
	tenants := server.NewTenants(cfg, build)
	defer tenants.Close()
	opts := []server.Option{server.WithLogger(log), server.WithTenants(tenants), server.WithAuditLogger(audit),
		server.WithTransport(f.Security.transport(cfg)), server.WithMaxWatchStreams(f.Security.MaxWatchStreams)}
	if f.Security.NoReflection {
		opts = append(opts, server.WithoutReflection())
	}
	if f.TLSCert != "" {
		tcfg, err := tlsconfig.Server(f.TLSCert, f.TLSKey, f.TLSClientCA)
		if err != nil {
			return err
		}
		opts = append(opts, server.WithGRPCOptions(grpc.Creds(credentials.NewTLS(tcfg))))
	}
	if tp != nil {
		opts = append(opts, server.WithTracerProvider(tp))
	}
	srv := server.New(cfg, backends, opts...)
	var probe *storeProbe
	if rdb != nil {
		probe = &storeProbe{
			client: rdb, prefix: cfg.RedisKeyPrefix, log: log, every: time.Second, eviction: f.RedisEviction,
			health: probeTarget{srv, metrics}, onDataLoss: func(ctx context.Context) {
				backends.StoreDataLost(ctx)
				tenants.StoreDataLost(ctx)
			},
		}
		// A Redis that may evict limits is refused before serving when the
		// operator asked for it; an unreachable one is checked later.
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		perr := probe.CheckPolicy(pctx)
		cancel()
		if perr != nil && f.RedisEviction == EvictionRefuse && !errors.Is(perr, context.DeadlineExceeded) {
			return fmt.Errorf("--redis-eviction refuse: %w", perr)
		}
	}
	lis, err := net.Listen("tcp", f.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", f.Listen, err)
	}
	defer lis.Close()
	var ops *opsServer
	if f.MetricsListen != "" {
		if ops, err = newOpsServer(f.MetricsListen, reg, srv.Serving, f.Pprof, log); err != nil {
			return fmt.Errorf("cannot listen on --metrics-listen %s: %w", f.MetricsListen, err)
		}
	}

	// Background work: the store probe, the backends' own loops, config
	// reloads and the metrics endpoint. They stop after the gRPC server has
	// drained, before Redis is closed.
	bg := newBackground()
	bg.Go(backends.Run)
	bg.Go(tenants.Run)
	if probe != nil {
		bg.Go(probe.Run)
	}
	if f.ConfigPath != "" {
		apply := func(next *config.Config) error {
			if err := checkReload(srv, next); err != nil {
				return err
			}
			if err := applyConfig(srv, backends, next, log); err != nil {
				return err
			}
			return tenants.SetConfig(next)
		}
		result := func(err error) {
			metrics.ConfigReloaded(err == nil)
			srv.AuditReload(f.ConfigPath, err)
		}
		bg.Go(newReloader(f.ConfigPath, cfgData, log, apply, result).Run)
	}
	metricsAddr := ""
	if ops != nil {
		metricsAddr = ops.lis.Addr().String()
		bg.Go(func(context.Context) { ops.Run() })
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()
	log.Info("resilienced started", "listen", lis.Addr().String(), "metrics", metricsAddr,
		"store", string(kind), "config", f.ConfigPath, "tracing", tp != nil, "tls", f.TLSCert != "", "mtls", f.TLSClientCA != "", "auth", cfg.Auth != nil)

	select {
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
		log.Info("shutting down", "timeout", f.ShutdownTimeout.String())
		sctx, cancel := context.WithTimeout(context.Background(), f.ShutdownTimeout)
		defer cancel()
		srv.Shutdown(sctx)
		<-serveErr
		err = nil
	}
	if ops != nil {
		octx, cancel := context.WithTimeout(context.Background(), time.Second)
		ops.Close(octx)
		cancel()
	}
	bg.Close()
	if err == nil {
		log.Info("stopped")
	}
	return err
}

// applyConfig puts a reloaded configuration in force. Settings that shape
// the stores (redis_key_prefix, cache.max_memory_entries) need a restart:
// they keep their running values, with a warning.
func applyConfig(srv *server.Server, b *server.Backends, next *config.Config, log *slog.Logger) error {
	cur := srv.Config()
	if next.RedisKeyPrefix != cur.RedisKeyPrefix {
		log.Warn("redis_key_prefix changes need a restart; keeping the running prefix", "running", cur.RedisKeyPrefix, "file", next.RedisKeyPrefix)
		next.RedisKeyPrefix = cur.RedisKeyPrefix
	}
	if next.Cache.MaxMemoryEntries != cur.Cache.MaxMemoryEntries {
		log.Warn("cache.max_memory_entries changes need a restart; keeping the running bound")
		next.Cache.MaxMemoryEntries = cur.Cache.MaxMemoryEntries
	}
	// Both steps only fail on values config.Parse already rejects; the
	// envoy swap goes first because it is the one that validates more.
	if err := b.EnvoyRLS.SetConfig(next.EnvoyRateLimit); err != nil {
		return err
	}
	if err := b.Cache.SetLimits(next.Cache.DefaultTTL.D(), int(next.Cache.MaxValueBytes)); err != nil {
		return err
	}
	srv.SetConfig(next)
	return nil
}

// probeTarget is where the store probe reports: the server's health and
// the metrics.
type probeTarget struct {
	srv     *server.Server
	metrics *server.Metrics
}

func (t probeTarget) SetStoreHealthy(ok bool)          { t.srv.SetStoreHealthy(ok) }
func (t probeTarget) StoreDataLost()                   { t.metrics.StoreDataLost() }
func (t probeTarget) SetStoreEvictable(evictable bool) { t.metrics.SetStoreEvictable(evictable) }

// redisLogger sends go-redis's own log lines (pool and reconnection
// messages) to the process logger as warnings, so the log stays JSON.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client: "+redisconn.Redact(fmt.Sprintf(format, v...)))
}

// probeHealth asks the server on f.Listen (an empty or wildcard host means
// loopback) for its overall gRPC health. With TLS it connects over TLS
// without verifying the server (it is a local liveness check) and, with
// mutual TLS, presents the server's own certificate, which must then be
// signed by the client CA.
func probeHealth(ctx context.Context, f Flags) error {
	host, port, err := net.SplitHostPort(f.Listen)
	if err != nil {
		return fmt.Errorf("%w: --listen %q: %v", errUsage, f.Listen, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	creds := insecure.NewCredentials()
	if f.TLSCert != "" {
		cert, key := "", ""
		if f.TLSClientCA != "" {
			cert, key = f.TLSCert, f.TLSKey
		}
		tcfg, err := tlsconfig.Client("", cert, key, "", true)
		if err != nil {
			return err
		}
		creds = credentials.NewTLS(tcfg)
	}
	conn, err := grpc.NewClient(net.JoinHostPort(host, port), grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health check: %s", resp.GetStatus())
	}
	return nil
}
