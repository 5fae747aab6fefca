package config

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/limiter"
)

// Auth is the auth: section: who may call the service, in which tenant and
// with which roles, and what each tenant may use of the service. Without it
// (a nil *Auth) the service has one implicit tenant and every caller has
// every role, as before tenants existed.
//
// A loaded Auth is immutable and safe for concurrent use.
type Auth struct {
	// Principals are the callers the service knows. At least one.
	Principals []Principal `yaml:"principals"`
	// TenantDefaults apply to every tenant, for the fields its entry in
	// Tenants leaves zero.
	TenantDefaults TenantLimits `yaml:"tenant_defaults"`
	// Tenants hold per-tenant settings and policies, by tenant name. A
	// tenant needs no entry; every entry's tenant must have a principal.
	Tenants map[string]Tenant `yaml:"tenants"`

	digests [][sha256.Size]byte // per principal; zero for TLS principals
	views   map[string]*Config  // per tenant: the configuration it sees
}

// Principal is one caller: a name for logs and audit, the tenant whose
// buckets, breakers and cache entries it uses, its roles and exactly one
// credential.
type Principal struct {
	// Name identifies the principal in audit lines and errors; unique.
	Name string `yaml:"name"`
	// Tenant is the principal's key space (see TenantNamePattern).
	Tenant string `yaml:"tenant"`
	// Roles are among RoleCaller, RoleOperator and RoleEnvoy.
	Roles []string `yaml:"roles"`
	// TokenSHA256 is the hex SHA-256 of the principal's bearer token
	// (`printf %s "$TOKEN" | sha256sum`). The token itself never appears in
	// the configuration.
	TokenSHA256 string `yaml:"token_sha256"`
	// TLSIdentity is the identity of the principal's client certificate
	// under mutual TLS: its first URI SAN (a SPIFFE ID), else its first DNS
	// SAN, else its subject CN.
	TLSIdentity string `yaml:"tls_identity"`
}

// HasRole reports whether p has role.
func (p *Principal) HasRole(role string) bool { return slices.Contains(p.Roles, role) }

// TenantLimits bound what one tenant may use of the service, per replica.
type TenantLimits struct {
	// RequestsPerSecond is the rate of calls the tenant may make to each
	// replica (default DefaultTenantRequestsPerSecond); beyond it calls are
	// refused with RESOURCE_EXHAUSTED and a RetryInfo.
	RequestsPerSecond int64 `yaml:"requests_per_second"`
	// RequestBurst is how many calls may come at once above that rate
	// (default twice RequestsPerSecond).
	RequestBurst int64 `yaml:"request_burst"`
	// MaxRequestWait is how long a call above the rate may wait for its
	// turn before it is refused (default DefaultTenantRequestWait; never
	// past the call's deadline). Waiting turns a flood from closed-loop
	// callers into back-pressure at the tenant's rate, instead of a stream
	// of cheap refusals that still costs every other tenant CPU.
	MaxRequestWait Duration `yaml:"max_request_wait"`
	// MaxWatchStreams bounds the tenant's open WatchBreakers streams on each
	// replica (default DefaultTenantWatchStreams).
	MaxWatchStreams int `yaml:"max_watch_streams"`
}

// Tenant is one tenant's entry: its limits, and named limits and breaker
// policies that override (or add to) the shared ones of the same name for
// this tenant only.
type Tenant struct {
	TenantLimits `yaml:",inline"`
	// Limits are named rate limits of this tenant; a name also in the
	// top-level limits is this tenant's version of it.
	Limits map[string]Limit `yaml:"limits"`
	// Breakers are breaker policies of this tenant; "default" replaces the
	// shared default for this tenant's breakers without an entry.
	Breakers map[string]Breaker `yaml:"breakers"`
}

// The roles a principal may hold.
const (
	// RoleCaller may Acquire, ReportOutcome, read a breaker's state and Get,
	// Set and Delete cache entries.
	RoleCaller = "caller"
	// RoleOperator may do what a caller may, and list, watch and reset
	// breakers, delete cache entries by pattern and read cache statistics.
	RoleOperator = "operator"
	// RoleEnvoy may only call Envoy's ShouldRateLimit.
	RoleEnvoy = "envoy"
)

// Defaults of TenantLimits.
const (
	DefaultTenantRequestsPerSecond = 1000
	DefaultTenantRequestWait       = 100 * time.Millisecond
	DefaultTenantWatchStreams      = 16
)

// TenantNamePattern is what a tenant name looks like: it becomes part of
// Redis keys, so it is short and has no separators or glob characters.
const TenantNamePattern = `^[a-z0-9][a-z0-9_-]{0,62}$`

var tenantName = regexp.MustCompile(TenantNamePattern)

// maxPrincipalName bounds principal names and TLS identities.
const maxPrincipalName = 256

// Tenant returns the configuration as a caller of tenant sees it: c with the
// tenant's named limits and breaker policies over the shared ones. It is c
// itself for the implicit tenant ("") and for tenants without overrides.
func (c *Config) Tenant(tenant string) *Config {
	if c.Auth == nil || tenant == "" {
		return c
	}
	if v, ok := c.Auth.views[tenant]; ok {
		return v
	}
	return c
}

// Limits returns the limits of tenant: its entry over TenantDefaults over
// the package defaults.
func (a *Auth) Limits(tenant string) TenantLimits {
	l := a.Tenants[tenant].TenantLimits
	if l.RequestsPerSecond == 0 {
		l.RequestsPerSecond = a.TenantDefaults.RequestsPerSecond
		if l.RequestBurst == 0 {
			l.RequestBurst = a.TenantDefaults.RequestBurst
		}
	}
	if l.RequestBurst == 0 {
		l.RequestBurst = 2 * l.RequestsPerSecond
	}
	if l.MaxWatchStreams == 0 {
		l.MaxWatchStreams = a.TenantDefaults.MaxWatchStreams
	}
	if l.MaxRequestWait == 0 {
		l.MaxRequestWait = a.TenantDefaults.MaxRequestWait
	}
	return l
}

// ByToken returns the principal whose token is token. It hashes token and
// compares the digest with every principal's in constant time, so the time
// taken says nothing about which principal, if any, matched.
func (a *Auth) ByToken(token string) (*Principal, bool) {
	sum := sha256.Sum256([]byte(token))
	found := -1
	for i := range a.digests {
		if a.Principals[i].TokenSHA256 == "" {
			continue
		}
		if subtle.ConstantTimeCompare(sum[:], a.digests[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return nil, false
	}
	return &a.Principals[found], true
}

// ByTLSIdentity returns the principal whose tls_identity is id.
func (a *Auth) ByTLSIdentity(id string) (*Principal, bool) {
	if id == "" {
		return nil, false
	}
	for i := range a.Principals {
		if a.Principals[i].TLSIdentity == id {
			return &a.Principals[i], true
		}
	}
	return nil, false
}

// TenantNames returns the tenants of the principals, sorted, once each.
func (a *Auth) TenantNames() []string {
	var out []string
	for _, p := range a.Principals {
		if !slices.Contains(out, p.Tenant) {
			out = append(out, p.Tenant)
		}
	}
	slices.Sort(out)
	return out
}

func (c *Config) validateAuth(add func(msg string, path ...string)) {
	a := c.Auth
	if a == nil {
		return
	}
	if len(a.Principals) == 0 {
		add("at least one principal is required (an auth section without principals refuses every caller)", "auth", "principals")
	}
	names := map[string]int{}
	tokens := map[string]int{}
	identities := map[string]int{}
	tenants := map[string]bool{}
	for i, p := range a.Principals {
		path := func(field string) []string { return []string{"auth", "principals", fmt.Sprint(i), field} }
		switch {
		case p.Name == "":
			add("is required", path("name")...)
		case len(p.Name) > maxPrincipalName || strings.ContainsFunc(p.Name, isSpaceOrControl):
			add(fmt.Sprintf("must be 1 to %d bytes without spaces or control characters", maxPrincipalName), path("name")...)
		default:
			if j, dup := names[p.Name]; dup {
				add(fmt.Sprintf("%q is also the name of principal %d", p.Name, j), path("name")...)
			}
			names[p.Name] = i
		}
		if !tenantName.MatchString(p.Tenant) {
			add(fmt.Sprintf("must match %s, got %q", TenantNamePattern, p.Tenant), path("tenant")...)
		}
		tenants[p.Tenant] = true
		if len(p.Roles) == 0 {
			add(fmt.Sprintf("at least one of %q, %q, %q is required", RoleCaller, RoleOperator, RoleEnvoy), path("roles")...)
		}
		for j, r := range p.Roles {
			switch r {
			case RoleCaller, RoleOperator, RoleEnvoy:
				if slices.Index(p.Roles, r) != j {
					add(fmt.Sprintf("%q appears twice", r), path("roles")...)
				}
			default:
				add(fmt.Sprintf("must be %q, %q or %q, got %q", RoleCaller, RoleOperator, RoleEnvoy, r), path("roles")...)
			}
		}
		switch {
		case p.TokenSHA256 != "" && p.TLSIdentity != "":
			add("set exactly one of token_sha256 and tls_identity, not both", path("token_sha256")...)
		case p.TokenSHA256 == "" && p.TLSIdentity == "":
			add("one of token_sha256 and tls_identity is required", path("token_sha256")...)
		case p.TokenSHA256 != "":
			// Never echo the value: a token pasted here by mistake would
			// end up in the logs.
			if b, err := hex.DecodeString(p.TokenSHA256); err != nil || len(b) != sha256.Size {
				add("must be the hex SHA-256 of the token (64 hex digits: printf %s \"$TOKEN\" | sha256sum), not the token itself", path("token_sha256")...)
			} else {
				key := strings.ToLower(p.TokenSHA256)
				if j, dup := tokens[key]; dup {
					add(fmt.Sprintf("is also the token of principal %d; every principal needs its own token", j), path("token_sha256")...)
				}
				tokens[key] = i
			}
		default:
			if len(p.TLSIdentity) > maxPrincipalName {
				add(fmt.Sprintf("must be at most %d bytes", maxPrincipalName), path("tls_identity")...)
			}
			if j, dup := identities[p.TLSIdentity]; dup {
				add(fmt.Sprintf("is also the identity of principal %d", j), path("tls_identity")...)
			}
			identities[p.TLSIdentity] = i
		}
	}
	validateTenantLimits(add, a.TenantDefaults, "auth", "tenant_defaults")
	for _, name := range sortedKeys(a.Tenants) {
		t := a.Tenants[name]
		if !tenantName.MatchString(name) {
			add(fmt.Sprintf("tenant name must match %s", TenantNamePattern), "auth", "tenants", name)
		} else if !tenants[name] {
			add("no principal has this tenant (a misspelt name?)", "auth", "tenants", name)
		}
		validateTenantLimits(add, t.TenantLimits, "auth", "tenants", name)
		validateLimits(add, t.Limits, "auth", "tenants", name, "limits")
		validateBreakers(add, t.Breakers, "auth", "tenants", name, "breakers")
	}
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

func validateTenantLimits(add func(string, ...string), l TenantLimits, path ...string) {
	at := func(f string) []string { return append(slices.Clone(path), f) }
	if l.RequestsPerSecond < 0 {
		add(fmt.Sprintf("must not be negative, got %d", l.RequestsPerSecond), at("requests_per_second")...)
	}
	if l.RequestBurst < 0 {
		add(fmt.Sprintf("must not be negative, got %d", l.RequestBurst), at("request_burst")...)
	}
	if l.RequestBurst > 0 && l.RequestsPerSecond == 0 && len(path) > 2 {
		// A tenant's own burst without its own rate would pair with the
		// default rate; say which rate it is for.
		add("needs requests_per_second in the same entry", at("request_burst")...)
	}
	if l.MaxRequestWait < 0 || l.MaxRequestWait.D() > time.Minute {
		add(fmt.Sprintf("must be between 0 and 1m, got %s", l.MaxRequestWait.D()), at("max_request_wait")...)
	}
	if l.RequestsPerSecond > 0 {
		lim := limiter.Limit{MaxCalls: l.RequestsPerSecond, Window: time.Second, Burst: max(l.RequestBurst, 1)}
		var ie *limiter.InvalidArgumentError
		if err := lim.Validate(); errors.As(err, &ie) {
			add(ie.Reason, at("requests_per_second")...)
		}
	}
	if l.MaxWatchStreams < 0 {
		add(fmt.Sprintf("must not be negative, got %d", l.MaxWatchStreams), at("max_watch_streams")...)
	}
}

// applyAuthDefaults fills the tenant defaults and builds each tenant's view
// of the configuration (after c's own defaults).
func (c *Config) applyAuthDefaults() {
	a := c.Auth
	if a == nil {
		return
	}
	if a.TenantDefaults.RequestsPerSecond == 0 {
		a.TenantDefaults.RequestsPerSecond = DefaultTenantRequestsPerSecond
	}
	if a.TenantDefaults.RequestBurst == 0 {
		a.TenantDefaults.RequestBurst = 2 * a.TenantDefaults.RequestsPerSecond
	}
	if a.TenantDefaults.MaxWatchStreams == 0 {
		a.TenantDefaults.MaxWatchStreams = DefaultTenantWatchStreams
	}
	if a.TenantDefaults.MaxRequestWait == 0 {
		a.TenantDefaults.MaxRequestWait = Duration(DefaultTenantRequestWait)
	}
	a.digests = make([][sha256.Size]byte, len(a.Principals))
	for i, p := range a.Principals {
		if b, err := hex.DecodeString(p.TokenSHA256); err == nil && len(b) == sha256.Size {
			copy(a.digests[i][:], b)
		}
	}
	a.views = map[string]*Config{}
	for name, t := range a.Tenants {
		if len(t.Limits) == 0 && len(t.Breakers) == 0 {
			continue
		}
		v := *c
		v.Limits = make(map[string]Limit, len(c.Limits)+len(t.Limits))
		for k, l := range c.Limits {
			v.Limits[k] = l
		}
		for k, l := range t.Limits {
			v.Limits[k] = l.withDefaults()
		}
		v.Breakers = make(map[string]Breaker, len(c.Breakers)+len(t.Breakers))
		for k, b := range c.Breakers {
			v.Breakers[k] = b
		}
		def := c.Breakers["default"]
		if td, ok := t.Breakers["default"]; ok {
			def = td.withDefaults(def)
			v.Breakers["default"] = def
		}
		for k, b := range t.Breakers {
			v.Breakers[k] = b.withDefaults(def)
		}
		a.views[name] = &v
	}
}

// withDefaults fills l's zero fields (burst and on_store_failure) and builds
// its limiter.Limit. l was validated (validateLimits), so NewLimit accepts it.
func (l Limit) withDefaults() Limit {
	if lim, err := l.newLimit(); err == nil {
		l.limit, l.Burst = lim, lim.Burst
	}
	if l.OnStoreFailure == "" {
		l.OnStoreFailure = AllowLocal
	}
	return l
}

// Transport bounds: the gRPC port carries a Set request of
// cache.max_value_bytes plus MessageHeadroom for the key and the framing.
const (
	// MessageHeadroom is added to cache.max_value_bytes to size the largest
	// message the server receives.
	MessageHeadroom = 64 << 10
	// MaxMessageBytes is the largest message the server is willing to
	// receive; cache.max_value_bytes must leave MessageHeadroom below it.
	MaxMessageBytes = 64 << 20
)

// MaxRecvMessageBytes is the largest message the server should accept under
// c: cache.max_value_bytes plus MessageHeadroom.
func (c *Config) MaxRecvMessageBytes() int {
	return int(c.Cache.MaxValueBytes) + MessageHeadroom
}

func (c *Config) validateTransport(add func(string, ...string)) {
	if c.Cache.MaxValueBytes > MaxMessageBytes-MessageHeadroom {
		add(fmt.Sprintf("must be at most %d: the gRPC transport does not carry messages above %d bytes", MaxMessageBytes-MessageHeadroom, MaxMessageBytes), "cache", "max_value_bytes")
	}
}

// validateLimits checks named limits under path (the top-level limits or a
// tenant's).
func validateLimits(add func(string, ...string), limits map[string]Limit, path ...string) {
	at := func(p ...string) []string { return append(slices.Clone(path), p...) }
	for _, name := range sortedKeys(limits) {
		l := limits[name]
		validPolicyName(add, name, at(name)...)
		// The limiter's own rules: positive limits, whole microseconds,
		// exact arithmetic.
		var ie *limiter.InvalidArgumentError
		if l.MaxInFlight != 0 || l.InFlightLease != 0 {
			if err := l.Slots().Validate(); errors.As(err, &ie) {
				add(ie.Reason, at(name, ie.Field)...)
			}
			if !l.HasRate() {
				if l.Lease.MaxTokens != 0 || l.Lease.TTL != 0 {
					add("needs a rate limit (max_calls and time_window): a concurrency limit alone takes no tokens", at(name, "lease")...)
				}
				validChoice(add, l.OnStoreFailure, AllowLocal, Deny, at(name, "on_store_failure")...)
				continue
			}
		}
		if lim, err := l.newLimit(); errors.As(err, &ie) {
			add(ie.Reason, at(name, ie.Field)...)
		} else if err == nil && l.Lease.MaxTokens == 0 && l.Lease.TTL != 0 {
			add("is required with lease.ttl (lease mode is off without it)", at(name, "lease", "max_tokens")...)
		} else if err := l.LeasePolicy().Validate(lim); errors.As(err, &ie) {
			add(ie.Reason, at(append([]string{name}, strings.Split(ie.Field, ".")...)...)...)
		}
		validChoice(add, l.OnStoreFailure, AllowLocal, Deny, at(name, "on_store_failure")...)
	}
}

// validPolicyName reports, at path, a limit's or breaker policy's name that
// is empty or longer than MaxNameBytes.
func validPolicyName(add func(string, ...string), name string, path ...string) {
	if name == "" || len(name) > MaxNameBytes {
		add(fmt.Sprintf("name must be 1 to %d bytes", MaxNameBytes), path...)
	}
}

// validChoice reports, at path, a v that is neither "" (the default) nor a
// nor b.
func validChoice(add func(string, ...string), v, a, b string, path ...string) {
	if v != "" && v != a && v != b {
		add(fmt.Sprintf("must be %q or %q, got %q", a, b, v), path...)
	}
}

// validateBreakers checks breaker policies under path.
func validateBreakers(add func(string, ...string), breakers map[string]Breaker, path ...string) {
	at := func(p ...string) []string { return append(slices.Clone(path), p...) }
	for _, name := range sortedKeys(breakers) {
		b := breakers[name]
		validPolicyName(add, name, at(name)...)
		validChoice(add, b.Mode, ModeConsecutive, ModeFailureRate, at(name, "mode")...)
		// Zero fields mean "inherit"; the breaker package checks the rest.
		var se *breaker.InvalidArgumentError
		if _, err := breaker.NewSettings(b.fields()); errors.As(err, &se) {
			add(se.Reason, at(name, se.Field)...)
		}
	}
}

// hasTopKey reports whether the document root has the top-level key.
func hasTopKey(root *yaml.Node, key string) bool {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return true
		}
	}
	return false
}
