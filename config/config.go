// Package config loads the server's YAML configuration: named rate limits,
// breaker policies, cache settings and the Redis key prefix.
//
// Loading is strict: unknown fields are errors, and every error names the
// file, the line and the field. A loaded Config is immutable and safe for
// concurrent use.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/cache"
	"github.com/topdeck/resilience/envoyrls"
	"github.com/topdeck/resilience/limiter"
)

// Config is the whole configuration file. The zero value, after
// ApplyDefaults, is a valid configuration with no named limits and the
// default breaker policy.
type Config struct {
	// RedisKeyPrefix is prepended to every Redis key the service writes
	// (default "resilience:"). It must not contain '{' or '}', which Redis
	// Cluster reads as a hash tag.
	RedisKeyPrefix string `yaml:"redis_key_prefix"`
	// Limits are named rate limits, used by Acquire's `policy` field.
	Limits map[string]Limit `yaml:"limits"`
	// Breakers are breaker policies by breaker name; "default" applies to
	// every breaker without its own entry.
	Breakers map[string]Breaker `yaml:"breakers"`
	// Cache holds the cache service's settings.
	Cache Cache `yaml:"cache"`
	// EnvoyRateLimit configures Envoy's rate limit service: a list of domain
	// documents, each exactly as one file of Envoy's reference ratelimit
	// service (nil: no domains, every request is OK).
	EnvoyRateLimit *envoyrls.Config `yaml:"envoy_ratelimit"`
	// Auth lists the principals, their tenants and roles, and per-tenant
	// settings (nil: one implicit tenant, every caller has every role). See
	// Auth and docs/security.md.
	Auth *Auth `yaml:"auth"`
}

// Limit is a named rate limit: a token bucket of capacity Burst refilled at
// MaxCalls per TimeWindow.
type Limit struct {
	// MaxCalls per TimeWindow; required, > 0.
	MaxCalls int64 `yaml:"max_calls"`
	// TimeWindow over which MaxCalls refill; required, > 0.
	TimeWindow Duration `yaml:"time_window"`
	// Burst is the bucket capacity; 0 means MaxCalls.
	Burst int64 `yaml:"burst"`
	// OnStoreFailure says what Acquire does when Redis is unreachable:
	// "allow_local" (default: decide with a local bucket, answer degraded)
	// or "deny" (answer UNAVAILABLE).
	OnStoreFailure string `yaml:"on_store_failure"`
	// Lease turns on lease mode for hot keys (absent: off). See LimitLease.
	Lease LimitLease `yaml:"lease"`
	// MaxInFlight makes the limit a concurrency limit too (or only, with
	// max_calls, time_window and burst unset): at most this many calls
	// admitted on a key and not released, fleet-wide (0: none).
	MaxInFlight int64 `yaml:"max_in_flight"`
	// InFlightLease is how long one slot is held at most; required with
	// max_in_flight (> 0, whole milliseconds, at most 1h).
	InFlightLease Duration `yaml:"in_flight_lease"`
	// Shadow decides the limit without enforcing it: what it would refuse
	// is metered (resilience_acquire_total{shadow=...}) and logged at
	// debug, and the call goes on. For rolling out a new limit.
	Shadow bool `yaml:"shadow"`

	// limit is the limiter's Limit, built by limiter.NewLimit when the file
	// is loaded (zero in a Limit written as a literal).
	limit limiter.Limit
}

// InlineLimit returns the Limit of lim, a limit from limiter.NewLimit that
// came in a request rather than from the file, with the default
// on_store_failure (allow_local).
func InlineLimit(lim limiter.Limit) Limit {
	return Limit{MaxCalls: lim.MaxCalls, TimeWindow: Duration(lim.Window), Burst: lim.Burst, OnStoreFailure: AllowLocal, limit: lim}
}

// Limiter returns l as the limiter's Limit: the one validated when the file
// was loaded (see limiter.NewLimit), so that nothing checks or converts it
// again per call.
func (l Limit) Limiter() limiter.Limit {
	if l.limit.MaxCalls == l.MaxCalls && l.limit.Window == l.TimeWindow.D() && l.limit.Burst == l.Burst && l.MaxCalls != 0 {
		return l.limit
	}
	return limiter.Limit{MaxCalls: l.MaxCalls, Window: l.TimeWindow.D(), Burst: l.Burst}
}

// HasRate reports whether l limits calls per window (a concurrency limit
// alone has max_calls, time_window and burst unset).
func (l Limit) HasRate() bool { return l.MaxCalls != 0 || l.TimeWindow != 0 || l.Burst != 0 }

// Slots returns l's concurrency limit as the limiter's (the zero value when
// it has none).
func (l Limit) Slots() limiter.Slots {
	return limiter.Slots{MaxInFlight: l.MaxInFlight, Lease: l.InFlightLease.D()}
}

// LimitLease is a named limit's lease mode (package limiter, LeasePolicy):
// each replica takes tokens from the shared bucket in leases, one Redis round
// trip per lease instead of per call, and decides from them locally; the
// bucket keeps rate x TTL of its burst in reserve, so the fleet never admits
// more than the limit. The zero value is lease mode off.
type LimitLease struct {
	// MaxTokens is the most tokens one lease takes (> 0, at most the burst
	// less rate x TTL). A replica's leases start at what a call needs and
	// double up to it.
	MaxTokens int64 `yaml:"max_tokens"`
	// TTL is how long a lease's tokens may be used (> 0, whole
	// microseconds; rate x TTL must leave at least one token to lend).
	TTL Duration `yaml:"ttl"`
}

// LeasePolicy returns l's lease mode as the limiter's LeasePolicy (the zero
// value when off).
func (l Limit) LeasePolicy() limiter.LeasePolicy {
	return limiter.LeasePolicy{MaxTokens: l.Lease.MaxTokens, TTL: l.Lease.TTL.D()}
}

// newLimit validates l's numbers with the limiter's rules.
func (l Limit) newLimit() (limiter.Limit, error) {
	return limiter.NewLimit(l.MaxCalls, l.TimeWindow.D(), l.Burst)
}

// FailurePolicy returns l's OnStoreFailure as the limiter's policy.
func (l Limit) FailurePolicy() limiter.FailurePolicy {
	if l.OnStoreFailure == Deny {
		return limiter.Deny
	}
	return limiter.AllowLocal
}

// The values of Limit.OnStoreFailure.
const (
	AllowLocal = "allow_local"
	Deny       = "deny"
)

// Breaker is a breaker policy. Zero fields take the "default" entry's
// values, whose own zero fields take the breaker package's defaults (see
// DefaultBreaker).
type Breaker struct {
	// Mode is "consecutive" (default) or "failure_rate".
	Mode string `yaml:"mode"`
	// FailureThreshold consecutive failures open a closed breaker (default 5).
	FailureThreshold int `yaml:"failure_threshold"`
	// FailureRateThreshold (failure_rate mode) is the failure ratio in
	// (0, 1] that opens the breaker (default 0.5).
	FailureRateThreshold float64 `yaml:"failure_rate_threshold"`
	// Window (failure_rate mode) is the rolling window of the rate (default 60s).
	Window Duration `yaml:"window"`
	// MinimumCalls (failure_rate mode) is how many calls the window needs
	// before the rate can open the breaker (default 20).
	MinimumCalls int `yaml:"minimum_calls"`
	// RecoveryTimeout is how long an open breaker refuses calls (default 30s).
	RecoveryTimeout Duration `yaml:"recovery_timeout"`
	// HalfOpenMaxCalls is how many probes may be in flight at once,
	// fleet-wide, while half-open (default 1).
	HalfOpenMaxCalls int `yaml:"half_open_max_calls"`
	// SuccessThreshold successful probes close a half-open breaker (default 1).
	SuccessThreshold int `yaml:"success_threshold"`
	// ProbeTimeout is a probe's lease: an unreported probe is reclaimed after
	// it (default 10s).
	ProbeTimeout Duration `yaml:"probe_timeout"`
	// Shadow decides the breaker without enforcing it: a call it would
	// refuse goes on (metered with resilience_acquire_total{shadow=
	// "circuit_open"} and logged at debug). Outcomes are still recorded, so
	// its state is what it would be. Not inherited from "default" by
	// breakers that have their own entry.
	Shadow bool `yaml:"shadow"`

	// settings is the breaker's Settings, built by breaker.NewSettings when
	// the file is loaded (zero in a Breaker written as a literal).
	settings breaker.Settings
}

// The values of Breaker.Mode.
const (
	ModeConsecutive = "consecutive"
	ModeFailureRate = "failure_rate"
)

// Settings returns b as the breaker package's Settings: the ones validated
// and completed when the file was loaded (see breaker.NewSettings), so that
// nothing converts or completes them again per call.
func (b Breaker) Settings() breaker.Settings {
	if b.settings != (breaker.Settings{}) {
		x := breakerFromSettings(b.settings)
		x.Shadow = b.Shadow // not a setting of the breaker package
		if x == b {
			return b.settings
		}
	}
	return b.fields()
}

// fields converts b's fields as they are, zero ones included.
func (b Breaker) fields() breaker.Settings {
	s := breaker.Settings{
		FailureThreshold:     b.FailureThreshold,
		FailureRateThreshold: b.FailureRateThreshold,
		Window:               b.Window.D(),
		MinimumCalls:         b.MinimumCalls,
		RecoveryTimeout:      b.RecoveryTimeout.D(),
		HalfOpenMaxCalls:     b.HalfOpenMaxCalls,
		SuccessThreshold:     b.SuccessThreshold,
		ProbeTimeout:         b.ProbeTimeout.D(),
	}
	if b.Mode == ModeFailureRate {
		s.Mode = breaker.ModeFailureRate
	}
	return s
}

// DefaultBreaker is the policy used for fields left zero: the breaker
// package's defaults.
var DefaultBreaker = breakerFromSettings(breaker.Settings{}.WithDefaults())

// breakerFromSettings returns the Breaker of s, complete settings.
func breakerFromSettings(s breaker.Settings) Breaker {
	return Breaker{
		settings:             s,
		Mode:                 s.Mode.String(),
		FailureThreshold:     s.FailureThreshold,
		FailureRateThreshold: s.FailureRateThreshold,
		Window:               Duration(s.Window),
		MinimumCalls:         s.MinimumCalls,
		RecoveryTimeout:      Duration(s.RecoveryTimeout),
		HalfOpenMaxCalls:     s.HalfOpenMaxCalls,
		SuccessThreshold:     s.SuccessThreshold,
		ProbeTimeout:         Duration(s.ProbeTimeout),
	}
}

// Cache holds the cache service's settings.
type Cache struct {
	// DefaultTTL applies to Set calls with ttl 0 (default 5m).
	DefaultTTL Duration `yaml:"default_ttl"`
	// MaxValueBytes is the largest value Set accepts (default 1 MiB).
	MaxValueBytes int64 `yaml:"max_value_bytes"`
	// MaxMemoryEntries bounds the embedded in-memory cache (no Redis): the
	// least recently used entries are evicted beyond it (default 100000).
	MaxMemoryEntries int64 `yaml:"max_memory_entries"`
	// MemoryLayer is each replica's memory layer over a Redis cache: Gets
	// answered from memory while the replica follows the fleet's
	// invalidation feed (see cache.WithMemoryLayer). Read at start-up.
	MemoryLayer MemoryLayer `yaml:"memory_layer"`
}

// MemoryLayer configures a replica's memory layer over a Redis cache.
type MemoryLayer struct {
	// Enabled turns the layer on or off (default on; there is none on the
	// embedded store, which is memory already). Off, every Get reads Redis.
	Enabled *bool `yaml:"enabled"`
	// MaxEntries bounds its entries (default cache.DefaultNearMaxEntries).
	MaxEntries int64 `yaml:"max_entries"`
	// MaxBytes bounds its bytes (default cache.DefaultNearMaxBytes).
	MaxBytes int64 `yaml:"max_bytes"`
}

// On reports whether the memory layer is enabled.
func (m MemoryLayer) On() bool { return m.Enabled == nil || *m.Enabled }

// Defaults of the cache settings.
const (
	DefaultCacheTTL         = cache.DefaultTTL
	DefaultMaxValueBytes    = 1 << 20
	DefaultMaxMemoryEntries = 100000
	DefaultRedisKeyPrefix   = "resilience:"
)

// MaxNameBytes bounds the names of limits and breakers, as the API bounds keys
// and breaker names: breaker.MaxNameBytes is the one bound.
const MaxNameBytes = breaker.MaxNameBytes

// Duration is a time.Duration written in YAML as a Go duration string
// ("250ms", "60s", "1h").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as \"60s\"", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration: write a number with a unit, such as \"60s\", \"250ms\" or \"1h\"", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Default returns the configuration used when no file is given.
func Default() *Config {
	c := &Config{}
	c.applyDefaults()
	return c
}

// Load reads and validates the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse validates data as the configuration file named name (used in
// error messages).
func Parse(name string, data []byte) (*Config, error) {
	c := &Config{}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("config: %s: %s", name, cleanYAMLError(err))
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config: %s", describeDecodeError(name, &root, err))
	}
	errs := c.validate()
	if c.Auth == nil && hasTopKey(&root, "auth") {
		// "auth:" with nothing under it (every principal commented out)
		// must not quietly mean "no authentication".
		errs = append(errs, fieldError{path: []string{"auth"}, msg: "is empty; remove the section to run without authentication"})
	}
	if len(errs) > 0 {
		msgs := make([]string, 0, len(errs))
		for _, e := range errs {
			msgs = append(msgs, fmt.Sprintf("%s:%d: %s: %s", name, lineOf(&root, e.path), strings.Join(e.path, "."), e.msg))
		}
		return nil, fmt.Errorf("config: %s", strings.Join(msgs, "; "))
	}
	c.applyDefaults()
	return c, nil
}

var yamlErrorPrefix = regexp.MustCompile(`^yaml: (unmarshal errors:\n\s*)?`)

func cleanYAMLError(err error) string {
	s := yamlErrorPrefix.ReplaceAllString(err.Error(), "")
	s = strings.ReplaceAll(s, "\n ", ";")
	return strings.TrimSpace(s)
}

type fieldError struct {
	path []string
	msg  string
}

func (c *Config) validate() []fieldError {
	var errs []fieldError
	add := func(msg string, path ...string) { errs = append(errs, fieldError{path: path, msg: msg}) }
	if strings.ContainsAny(c.RedisKeyPrefix, "{}") {
		add("must not contain '{' or '}'", "redis_key_prefix")
	}
	validateLimits(add, c.Limits, "limits")
	validateBreakers(add, c.Breakers, "breakers")
	if c.Cache.DefaultTTL < 0 {
		add(fmt.Sprintf("must not be negative, got %s", c.Cache.DefaultTTL.D()), "cache", "default_ttl")
	}
	if c.Cache.DefaultTTL.D() > cache.MaxTTL {
		add(fmt.Sprintf("must be at most %s (10 years), got %s", cache.MaxTTL, c.Cache.DefaultTTL.D()), "cache", "default_ttl")
	}
	if c.Cache.MaxValueBytes < 0 {
		add(fmt.Sprintf("must not be negative, got %d", c.Cache.MaxValueBytes), "cache", "max_value_bytes")
	}
	if c.Cache.MaxMemoryEntries < 0 {
		add(fmt.Sprintf("must not be negative, got %d", c.Cache.MaxMemoryEntries), "cache", "max_memory_entries")
	}
	if c.Cache.MemoryLayer.MaxEntries < 0 {
		add(fmt.Sprintf("must not be negative (0 means %d), got %d", cache.DefaultNearMaxEntries, c.Cache.MemoryLayer.MaxEntries), "cache", "memory_layer", "max_entries")
	}
	if c.Cache.MemoryLayer.MaxBytes < 0 {
		add(fmt.Sprintf("must not be negative (0 means %d), got %d", int64(cache.DefaultNearMaxBytes), c.Cache.MemoryLayer.MaxBytes), "cache", "memory_layer", "max_bytes")
	}
	c.validateTransport(add)
	c.validateAuth(add)
	return errs
}

func (c *Config) applyDefaults() {
	if c.RedisKeyPrefix == "" {
		c.RedisKeyPrefix = DefaultRedisKeyPrefix
	}
	for name, l := range c.Limits {
		c.Limits[name] = l.withDefaults()
	}
	if c.Breakers == nil {
		c.Breakers = map[string]Breaker{}
	}
	def, ok := c.Breakers["default"]
	if !ok {
		def = DefaultBreaker
	}
	def = def.withDefaults(DefaultBreaker)
	c.Breakers["default"] = def
	for name, b := range c.Breakers {
		c.Breakers[name] = b.withDefaults(def)
	}
	if c.Cache.DefaultTTL == 0 {
		c.Cache.DefaultTTL = Duration(DefaultCacheTTL)
	}
	if c.Cache.MaxValueBytes == 0 {
		c.Cache.MaxValueBytes = DefaultMaxValueBytes
	}
	if c.Cache.MaxMemoryEntries == 0 {
		c.Cache.MaxMemoryEntries = DefaultMaxMemoryEntries
	}
	c.applyAuthDefaults()
}

// withDefaults fills b's zero fields from def, a complete policy (the
// "default" entry), with breaker.Settings.Inherit, and builds its Settings.
// b was validated (validateBreakers), so NewSettings accepts the result.
func (b Breaker) withDefaults(def Breaker) Breaker {
	s := b.fields().Inherit(def.Settings())
	if b.Mode == "" {
		s.Mode = def.Settings().Mode
	}
	if complete, err := breaker.NewSettings(s); err == nil {
		s = complete
	}
	out := breakerFromSettings(s)
	out.Shadow = b.Shadow
	return out
}

// BreakerPolicy returns the policy for the breaker called name and the name
// of the configured entry it came from ("default" when none matched).
func (c *Config) BreakerPolicy(name string) (Breaker, string) {
	if b, ok := c.Breakers[name]; ok {
		return b, name
	}
	return c.Breakers["default"], "default"
}

// lineOf returns the line of the YAML node at path, or of its nearest
// existing ancestor; 0 when nothing matches.
func lineOf(root *yaml.Node, path []string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, p := range path {
		if i, err := strconv.Atoi(p); err == nil && n.Kind == yaml.SequenceNode && i >= 0 && i < len(n.Content) {
			n = n.Content[i]
			line = n.Line
			continue
		}
		if n.Kind != yaml.MappingNode {
			return line
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == p {
				line = n.Content[i].Line
				next = n.Content[i+1]
				break
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
