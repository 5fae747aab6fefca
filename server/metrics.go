package server

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/topdeck/resilience/breaker"
)

// Metrics are the server's Prometheus metrics: gRPC requests by method and
// code with latency histograms, and the domain series, all named
// resilience_... Labels never carry caller-chosen keys; breaker names are
// capped (see MaxBreakerLabels).
//
// A nil *Metrics records nothing, so components work without metrics.
// Create it with NewMetrics; it is safe for concurrent use.
type Metrics struct {
	grpc *grpcprom.ServerMetrics

	acquire            *prometheus.CounterVec
	breakerState       *prometheus.GaugeVec
	breakerTransitions *prometheus.CounterVec
	cacheRequests      *prometheus.CounterVec
	storeDuration      *prometheus.HistogramVec
	storeErrors        *prometheus.CounterVec
	degraded           *prometheus.CounterVec
	configGeneration   prometheus.Gauge
	configReloads      *prometheus.CounterVec
	breakersPruned     prometheus.Counter
	auditEvents        *prometheus.CounterVec
	storeDataLoss      prometheus.Counter
	storeEvictable     prometheus.Gauge
	upstreamReports    *prometheus.CounterVec
	slotsReleased      prometheus.Counter

	mu       sync.Mutex // protects breakers
	breakers map[string]bool
}

// MaxBreakerLabels bounds the distinct breaker names used as label values;
// further breakers are counted under the name "_other".
const MaxBreakerLabels = 1000

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	latency := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	f := promFactory{reg}
	m := &Metrics{
		grpc: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramBuckets(latency))),
		upstreamReports: f.counters("resilience_upstream_reports_total",
			"Upstream feedback reports (ReportUpstream, ReportOutcome.upstream) by named policy (\"inline\" otherwise), whether the key is paused after it, and whether the pause was cut to the maximum (15m).",
			"policy", "paused", "clamped"),
		slotsReleased: f.counter("resilience_slots_released_total",
			"Concurrency slots given back by Release or ReportOutcome.slot_token before their lease ended."),
		acquire: f.counters("resilience_acquire_total",
			"Acquire decisions by reason (allowed, rate_limited, circuit_open, upstream_throttled, concurrency_limited, error), named policy (the refusing limit's, else the first; \"inline\" for inline limits, \"none\" for breaker-only calls), whether they were made without the shared store, and shadow: what a policy in shadow mode would have answered (rate_limited, circuit_open, upstream_throttled, concurrency_limited) or none.",
			"reason", "policy", "degraded", "shadow"),
		breakerState: f.gauges("resilience_breaker_state",
			"1 for the state each breaker is in (closed, open, half_open), 0 for the others, as last seen by this replica.",
			"breaker", "state"),
		breakerTransitions: f.counters("resilience_breaker_transitions_total",
			"Breaker state transitions seen by this replica (made by any replica), by breaker, from, to and reason.",
			"breaker", "from", "to", "reason"),
		cacheRequests: f.counters("resilience_cache_requests_total",
			"Cache requests by operation (get, set, delete, delete_pattern, stats) and result (hit, miss, stored, ok, degraded, error).",
			"op", "result"),
		storeDuration: f.histograms("resilience_store_duration_seconds",
			"Latency of shared-store (Redis) commands by command (pipelines as \"pipeline\").",
			latency, "op"),
		storeErrors: f.counters("resilience_store_errors_total",
			"Failed shared-store (Redis) commands and dials by command.",
			"op"),
		degraded: f.counters("resilience_degraded_total",
			"Answers made without the shared store, by component (limiter, breaker, cache).",
			"component"),
		configGeneration: f.gauge("resilience_config_generation",
			"Generation of the configuration in force: 1 at start, +1 on each successful reload."),
		configReloads: f.counters("resilience_config_reloads_total",
			"Configuration reloads by result (success, failure).",
			"result"),
		breakersPruned: f.counter("resilience_breaker_registry_pruned_total",
			"Breaker names removed from the shared registry (ListBreakers) by this replica because nothing used them for the idle TTL."),
		storeDataLoss: f.counter("resilience_store_data_loss_total",
			"Times this replica saw the shared store lose its data (its epoch key gone or changed: Redis restarted empty, flushed, or failed over to an empty replica)."),
		storeEvictable: f.gauge("resilience_store_evictable",
			"1 when the shared store may evict rate-limit and breaker keys (a maxmemory-policy other than noeviction with maxmemory set), 0 otherwise."),
		auditEvents: f.counters("resilience_audit_events_total",
			"Audit events by method (ResetBreaker, DeletePattern, ConfigReload, or the RPC refused) and result (ok, rejected, unauthenticated, permission_denied or another gRPC code).",
			"method", "result"),
		breakers: map[string]bool{},
	}
	registered(reg, m.grpc)
	m.configGeneration.Set(1)
	for _, r := range []string{"success", "failure"} {
		m.configReloads.WithLabelValues(r)
	}
	return m
}

// promFactory creates metrics and registers each with reg as it is made.
type promFactory struct{ reg prometheus.Registerer }

// registered registers c with reg and returns it.
func registered[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	reg.MustRegister(c)
	return c
}

func (f promFactory) counter(name, help string) prometheus.Counter {
	return registered(f.reg, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
}

func (f promFactory) gauge(name, help string) prometheus.Gauge {
	return registered(f.reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help}))
}

func (f promFactory) counters(name, help string, labels ...string) *prometheus.CounterVec {
	return registered(f.reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels))
}

func (f promFactory) gauges(name, help string, labels ...string) *prometheus.GaugeVec {
	return registered(f.reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels))
}

func (f promFactory) histograms(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return registered(f.reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels))
}

func boolLabel(b bool) string { return strconv.FormatBool(b) }

// observeAcquire counts one Acquire answer.
func (m *Metrics) observeAcquire(reason, policy, shadow string, degraded bool) {
	if m == nil {
		return
	}
	m.acquire.WithLabelValues(reason, policy, boolLabel(degraded), shadow).Inc()
	if degraded {
		m.degraded.WithLabelValues("limiter").Inc()
	}
}

// observeDegraded counts one answer of component made without the store.
func (m *Metrics) observeDegraded(component string) {
	if m == nil {
		return
	}
	m.degraded.WithLabelValues(component).Inc()
}

// observeCache counts one cache request.
func (m *Metrics) observeCache(op, result string) {
	if m == nil {
		return
	}
	m.cacheRequests.WithLabelValues(op, result).Inc()
	if result == "degraded" {
		m.degraded.WithLabelValues("cache").Inc()
	}
}

// breakerLabel returns name, or "_other" once MaxBreakerLabels names are in use.
func (m *Metrics) breakerLabel(name string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.breakers[name] {
		return name
	}
	if len(m.breakers) >= MaxBreakerLabels {
		return "_other"
	}
	m.breakers[name] = true
	return name
}

func stateLabel(s breaker.State) string { return strings.ToLower(s.String()) }

// observeBreaker records a breaker's state as seen in an answer.
func (m *Metrics) observeBreaker(name string, st breaker.State) {
	if m == nil {
		return
	}
	b := m.breakerLabel(name)
	if b == "_other" {
		return // a gauge of many breakers' states is meaningless
	}
	for _, s := range []breaker.State{breaker.StateClosed, breaker.StateOpen, breaker.StateHalfOpen} {
		v := 0.0
		if s == st {
			v = 1
		}
		m.breakerState.WithLabelValues(b, stateLabel(s)).Set(v)
	}
}

// observeEvent records a breaker transition.
func (m *Metrics) observeEvent(e breaker.Event) {
	if m == nil || e.Name == "" {
		return
	}
	m.breakerTransitions.WithLabelValues(m.breakerLabel(e.Name), stateLabel(e.From), stateLabel(e.To), e.Reason).Inc()
	m.observeBreaker(e.Name, e.To)
}

// observePruned counts names removed from the breaker registry.
func (m *Metrics) observePruned(n int) {
	if m == nil {
		return
	}
	m.breakersPruned.Add(float64(n))
}

// observeAudit counts one audit event.
func (m *Metrics) observeAudit(method, result string) {
	if m == nil {
		return
	}
	m.auditEvents.WithLabelValues(method, result).Inc()
}

// ConfigReloaded records a reload attempt.
func (m *Metrics) ConfigReloaded(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.configReloads.WithLabelValues("success").Inc()
		m.configGeneration.Inc()
		return
	}
	m.configReloads.WithLabelValues("failure").Inc()
}

// StoreDataLost records that the shared store lost its data.
func (m *Metrics) StoreDataLost() {
	if m != nil {
		m.storeDataLoss.Inc()
	}
}

// SetStoreEvictable records whether the shared store may evict rate-limit
// and breaker keys.
func (m *Metrics) SetStoreEvictable(evictable bool) {
	if m == nil {
		return
	}
	v := 0.0
	if evictable {
		v = 1
	}
	m.storeEvictable.Set(v)
}

// RedisHook returns a go-redis hook that records command latency and errors
// in m. Add it with client.AddHook before the client is used.
func (m *Metrics) RedisHook() redis.Hook { return redisHook{m} }

type redisHook struct{ m *Metrics }

func (h redisHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			h.m.storeErrors.WithLabelValues("dial").Inc()
		}
		return conn, err
	}
}

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		h.record(cmd.Name(), start, err)
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		h.record("pipeline", start, err)
		return err
	}
}

// storeOps are the command names recorded as themselves; others are "other",
// so that the label stays bounded whatever a script or a library sends.
var storeOps = map[string]bool{
	"evalsha": true, "eval": true, "get": true, "set": true, "unlink": true, "del": true, "scan": true,
	"hincrby": true, "hmget": true, "zadd": true, "zrangebylex": true, "ping": true, "script": true,
	"pipeline": true, "subscribe": true, "psubscribe": true, "publish": true, "exists": true,
}

func (h redisHook) record(op string, start time.Time, err error) {
	op = strings.ToLower(op)
	if !storeOps[op] {
		op = "other"
	}
	h.m.storeDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if realFailure(err) {
		h.m.storeErrors.WithLabelValues(op).Inc()
	}
}

// realFailure reports whether err is a store failure worth counting: not a
// miss (redis.Nil), not a NOSCRIPT reply (the stores load their scripts on
// first use and recover from it; a pipeline reports its first command's
// error), not a transaction that lost its race (redis.TxFailedErr).
func realFailure(err error) bool {
	switch {
	case err == nil, errors.Is(err, redis.Nil), errors.Is(err, redis.TxFailedErr):
		return false
	case strings.HasPrefix(err.Error(), "NOSCRIPT"):
		return false
	}
	return true
}

// observeUpstream counts one upstream feedback report.
func (m *Metrics) observeUpstream(policy string, paused, clamped bool) {
	if m == nil {
		return
	}
	m.upstreamReports.WithLabelValues(policy, boolLabel(paused), boolLabel(clamped)).Inc()
}

// observeSlotsReleased counts n slots given back.
func (m *Metrics) observeSlotsReleased(n int64) {
	if m == nil || n <= 0 {
		return
	}
	m.slotsReleased.Add(float64(n))
}
