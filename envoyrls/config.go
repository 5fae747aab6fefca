package envoyrls

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/topdeck/resilience/limiter"
)

// Config is the rate limit configuration: a list of domains, each like one
// configuration file of Envoy's reference rate limit service.
//
// Build one with [DecodeYAML], [Parse] or [NewConfig], which validate it.
// A Config built in code is validated by Validate (or New, SetConfig);
// change it only before, or call Validate again. It must not be changed
// after it is handed to a Server; it is then safe for concurrent use. The zero value is a valid, empty configuration
// (every request is OK).
type Config struct {
	// Domains in configuration order.
	Domains []Domain
	// ResponseHeaders adds RateLimit-* headers to the responses (the
	// reference's LIMIT_RESPONSE_HEADERS_ENABLED); off by default.
	ResponseHeaders ResponseHeaders
	// ResponseDynamicMetadata sets the response's dynamic_metadata (the
	// reference's RESPONSE_DYNAMIC_METADATA): the domain, the request's
	// descriptors and hits_addend, and the metadata of the descriptors that
	// matched and were not over their limit. Off by default.
	ResponseDynamicMetadata bool
	// ShadowMode answers OK overall even when a descriptor is OVER_LIMIT
	// (the statuses keep their codes), like the reference's SHADOW_MODE;
	// the same as [WithGlobalShadowMode]. Off by default.
	ShadowMode bool
	// QuotaMode makes every descriptor of every request a quota-mode one
	// (the reference's QUOTA_MODE): see Descriptor.QuotaMode. Off by
	// default.
	QuotaMode bool

	domainsField string // the domains' path in error messages; "" = rootField
	compiled     *table // set by validation; nil until then
}

// ResponseHeaders configures the rate limit headers of the IETF draft
// (RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset) that a response
// asks Envoy to add, as the reference's LIMIT_RESPONSE_HEADERS_ENABLED,
// LIMIT_LIMIT_HEADER, LIMIT_REMAINING_HEADER and LIMIT_RESET_HEADER do.
//
// The headers describe one descriptor of the request: the last one over
// its limit that is not in quota mode, or else the one with the fewest
// tokens left. Limit is its requests_per_unit, Remaining its
// limit_remaining, Reset its duration_until_reset in whole seconds, rounded
// up: when OK, until its bucket is full again; when OVER_LIMIT, until the
// request's hits fit. A response without any limited descriptor carries no
// headers.
type ResponseHeaders struct {
	// Enabled turns the headers on. The zero value is off.
	Enabled bool
	// Limit, Remaining and Reset are the header names; "" means
	// DefaultLimitHeader, DefaultRemainingHeader and DefaultResetHeader.
	// Each must be an HTTP header name (an RFC 9110 token), all three
	// distinct.
	Limit, Remaining, Reset string
	// Line is the line of the response_headers block in the YAML source (0
	// if built in code), for error messages.
	Line int
}

// The default names of the rate limit headers.
const (
	DefaultLimitHeader     = "RateLimit-Limit"
	DefaultRemainingHeader = "RateLimit-Remaining"
	DefaultResetHeader     = "RateLimit-Reset"
)

// Domain is one domain document.
type Domain struct {
	// Name is the domain (the document's "domain" field); required, unique.
	Name string
	// Descriptors is the top-level descriptor list.
	Descriptors []Descriptor
	// Line is the line of the document in the YAML source (0 if built in
	// code), for error messages.
	Line int
}

// Descriptor is one entry of a descriptor list.
type Descriptor struct {
	// Key is required.
	Key string
	// Value is optional: empty matches any value of Key (after more
	// specific siblings). A value containing '*' is a wildcard: each '*'
	// matches zero or more characters ("bar*b" matches "barb" and
	// "bar123b"; "foo*bar*baz" matches "foo1bar2baz").
	Value string
	// RateLimit is the limit applied when a request descriptor ends here;
	// nil for none.
	RateLimit *RateLimit
	// ShadowMode reports OVER_LIMIT decisions of this limit as OK.
	ShadowMode bool
	// ShareThreshold (wildcard values only) makes every value matched by
	// the wildcard share one bucket.
	ShareThreshold bool
	// QuotaMode marks the limit as a quota: a request is OVER_LIMIT overall
	// when a descriptor that is not in quota mode is over its limit, or when
	// all of its quota-mode descriptors are (and there is at least one). A
	// quota-mode status keeps its own code.
	QuotaMode bool
	// Metadata is free-form data (strings, numbers, booleans, null, lists
	// and maps with string keys) returned under "metadata" in the
	// response's dynamic_metadata when this descriptor's limit applies to
	// a request descriptor that is not over it (see
	// Config.ResponseDynamicMetadata). nil for none.
	Metadata map[string]any
	// DetailedMetric and ValueToMetric are accepted for compatibility with
	// the reference service's files; they only affect its metrics and have
	// no effect here.
	DetailedMetric, ValueToMetric bool
	// Descriptors are the nested descriptors.
	Descriptors []Descriptor
	// Line is the line of the descriptor in the YAML source (0 if built in
	// code).
	Line int
}

// RateLimit is a descriptor's rate_limit block.
type RateLimit struct {
	// Unit of the window; required unless Unlimited.
	Unit Unit
	// RequestsPerUnit is both the refill per Unit and the burst. 0 denies
	// every request.
	RequestsPerUnit uint32
	// Unlimited makes the descriptor always OK without consulting the
	// store; Unit and RequestsPerUnit must then be unset.
	Unlimited bool
	// Name identifies the limit for Replaces (optional).
	Name string
	// Replaces lists the names of limits this one replaces when both
	// match one request.
	Replaces []string
	// Line is the line of the rate_limit block (0 if built in code).
	Line int
}

// Unit is the window of a RateLimit. The zero value is "unset".
type Unit int

// Units, with the values of envoy.service.ratelimit.v3's
// RateLimitResponse.RateLimit.Unit, in its order (TestUnitsAreEnvoys
// checks each against it by name).
const (
	UnitSecond Unit = iota + 1
	UnitMinute
	UnitHour
	UnitDay
	UnitMonth
	UnitYear
	UnitWeek
)

// units are each unit's name and length (months are 30 days, years 365),
// by value.
var units = [...]struct {
	name string
	d    time.Duration
}{
	UnitSecond: {"second", time.Second},
	UnitMinute: {"minute", time.Minute},
	UnitHour:   {"hour", time.Hour},
	UnitDay:    {"day", 24 * time.Hour},
	UnitWeek:   {"week", 7 * 24 * time.Hour},
	UnitMonth:  {"month", 30 * 24 * time.Hour},
	UnitYear:   {"year", 365 * 24 * time.Hour},
}

// ParseUnit parses a unit name, case-insensitively: second, minute, hour,
// day, week, month or year.
func ParseUnit(s string) (Unit, bool) {
	for u, unit := range units {
		if u > 0 && strings.EqualFold(s, unit.name) {
			return Unit(u), true
		}
	}
	return 0, false
}

// String returns the unit's name ("second"), or "Unit(n)".
func (u Unit) String() string {
	if u.Valid() {
		return units[u].name
	}
	return fmt.Sprintf("Unit(%d)", int(u))
}

// Duration is the unit's length (months are 30 days, years 365); 0 for an
// unknown unit.
func (u Unit) Duration() time.Duration {
	if u.Valid() {
		return units[u].d
	}
	return 0
}

// Valid reports whether u is one of the units.
func (u Unit) Valid() bool { return u >= UnitSecond && int(u) < len(units) }

// ErrInvalidConfig is matched (errors.Is) by every configuration error.
var ErrInvalidConfig = errors.New("envoyrls: invalid configuration")

// ConfigError is one configuration error: the line (0 when unknown), the
// field's path (such as envoy_ratelimit[0].descriptors[2].rate_limit.unit)
// and what is wrong.
type ConfigError struct {
	Line   int
	Field  string
	Reason string
}

// Error returns "envoyrls: line 12: <field>: <reason>".
func (e *ConfigError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("envoyrls: line %d: %s: %s", e.Line, e.Field, e.Reason)
	}
	return fmt.Sprintf("envoyrls: %s: %s", e.Field, e.Reason)
}

// Is reports whether target is ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// ConfigErrors is several configuration errors, in source order.
type ConfigErrors []*ConfigError

// Error joins the errors with "; ".
func (es ConfigErrors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
		if i > 0 {
			parts[i] = strings.TrimPrefix(parts[i], "envoyrls: ")
		}
	}
	return strings.Join(parts, "; ")
}

// Unwrap returns the errors.
func (es ConfigErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// errList collects ConfigErrors, and counts what the YAML decoder has
// decoded so far.
type errList struct {
	errs    ConfigErrors
	decoded int // descriptors and metadata values, see maxDecoded
}

// spend counts one decoded descriptor or metadata value at path. Past
// maxDecoded it reports false, and adds the error the first time.
func (l *errList) spend(line int, path string) bool {
	l.decoded++
	if l.decoded == maxDecoded+1 {
		l.add(line, path, "too large: the configuration expands to more than %d descriptors and metadata values (through YAML aliases?)", maxDecoded)
	}
	return l.decoded <= maxDecoded
}

func (l *errList) add(line int, field, format string, args ...any) {
	l.errs = append(l.errs, &ConfigError{Line: line, Field: field, Reason: fmt.Sprintf(format, args...)})
}

func (l *errList) err() error {
	switch len(l.errs) {
	case 0:
		return nil
	case 1:
		return l.errs[0]
	default:
		return l.errs
	}
}

// rootField names the list in error messages.
const rootField = "envoy_ratelimit"

// NewConfig validates domains and returns them as a Config.
func NewConfig(domains []Domain) (*Config, error) {
	c := &Config{Domains: domains}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate reports whether c is a usable configuration: every error is a
// *ConfigError (several come as ConfigErrors) matching ErrInvalidConfig. On
// success it also prepares c for matching.
func (c *Config) Validate() error {
	var l errList
	t := &table{
		domains:         make(map[string]*level, len(c.Domains)),
		headers:         compileHeaders(&l, c.ResponseHeaders),
		dynamicMetadata: c.ResponseDynamicMetadata,
		shadow:          c.ShadowMode,
		quota:           c.QuotaMode,
	}
	domainsField := c.domainsField
	if domainsField == "" {
		domainsField = rootField
	}
	for i, d := range c.Domains {
		path := fmt.Sprintf("%s[%d]", domainsField, i)
		if d.Name == "" {
			l.add(d.Line, path+".domain", "must not be empty")
			continue
		}
		if _, dup := t.domains[d.Name]; dup {
			l.add(d.Line, path+".domain", "duplicate domain %q", d.Name)
			continue
		}
		t.domains[d.Name] = compileLevel(&l, d.Line, path, d.Descriptors)
	}
	if err := l.err(); err != nil {
		return err
	}
	c.compiled = t
	return nil
}

// table returns c's compiled form, validating c if needed.
func (c *Config) table() (*table, error) {
	if c == nil {
		return &table{}, nil
	}
	if c.compiled == nil {
		if err := c.Validate(); err != nil {
			return nil, err
		}
	}
	return c.compiled, nil
}

func compileLevel(l *errList, parentLine int, path string, ds []Descriptor) *level {
	if len(ds) == 0 {
		return nil
	}
	lv := &level{byValue: map[entry]*node{}, byKey: map[string]*node{}}
	for i := range ds {
		d := &ds[i]
		p := fmt.Sprintf("%s.descriptors[%d]", path, i)
		line := d.Line
		if line == 0 {
			line = parentLine
		}
		if d.Key == "" {
			l.add(line, p+".key", "must not be empty")
			continue
		}
		n := &node{children: compileLevel(l, line, p, d.Descriptors)}
		if d.RateLimit != nil {
			n.rule = compileRule(l, line, p+".rate_limit", d.RateLimit)
			n.rule.shadow, n.rule.quota = d.ShadowMode, d.QuotaMode
			if d.Metadata != nil {
				n.rule.metadata = compileMetadata(l, line, p+".metadata", d.Metadata)
			}
		} else if d.Metadata != nil {
			// Accepted as the reference does; it has no limit to go with.
			compileMetadata(l, line, p+".metadata", d.Metadata)
		}
		wild := strings.Contains(d.Value, "*")
		if d.ShareThreshold {
			if !wild {
				l.add(line, p+".share_threshold", "needs a wildcard value (containing '*'), got value %q", d.Value)
			}
			n.share = d.Value
		}
		if d.Value == "" {
			if _, dup := lv.byKey[d.Key]; dup {
				l.add(line, p, "duplicate descriptor: key %q without value appears twice on this level", d.Key)
				continue
			}
			lv.byKey[d.Key] = n
			continue
		}
		e := entry{d.Key, d.Value}
		if _, dup := lv.byValue[e]; dup {
			l.add(line, p, "duplicate descriptor: key %q value %q appears twice on this level", d.Key, d.Value)
			continue
		}
		lv.byValue[e] = n
		if wild {
			if lv.wildcards == nil {
				lv.wildcards = map[string][]wildcard{}
			}
			lv.wildcards[d.Key] = append(lv.wildcards[d.Key], wildcard{pattern: compilePattern(d.Value), n: n})
		}
	}
	return lv
}

func compileRule(l *errList, line int, path string, rl *RateLimit) *rule {
	if rl.Line != 0 {
		line = rl.Line
	}
	r := &rule{name: rl.Name, replaces: rl.Replaces, unlimited: rl.Unlimited,
		rpu: rl.RequestsPerUnit, unit: rl.Unit, window: rl.Unit.Duration()}
	for i, name := range rl.Replaces {
		switch {
		case name == "":
			l.add(line, fmt.Sprintf("%s.replaces[%d].name", path, i), "must not be empty")
		case name == rl.Name:
			l.add(line, fmt.Sprintf("%s.replaces[%d].name", path, i), "must not name the limit itself (%q)", name)
		}
	}
	if rl.Unlimited {
		if rl.Unit != 0 {
			l.add(line, path+".unit", "must not be set when unlimited is true")
		}
		if rl.RequestsPerUnit != 0 {
			l.add(line, path+".requests_per_unit", "must not be set when unlimited is true")
		}
		return r
	}
	if !rl.Unit.Valid() {
		if rl.Unit == 0 {
			l.add(line, path+".unit", "is required (second, minute, hour, day, week, month or year)")
		} else {
			l.add(line, path+".unit", "unknown unit %d", int(rl.Unit))
		}
		return r
	}
	if rl.RequestsPerUnit > 0 {
		r.limit = limiter.Limit{MaxCalls: int64(rl.RequestsPerUnit), Window: r.window, Burst: int64(rl.RequestsPerUnit)}
		if err := r.limit.Validate(); err != nil {
			var ie *limiter.InvalidArgumentError
			reason := err.Error()
			if errors.As(err, &ie) {
				reason = ie.Reason
			}
			l.add(line, path+".requests_per_unit", "%d per %s cannot be an exact bucket: %s", rl.RequestsPerUnit, rl.Unit, reason)
		}
	}
	return r
}

// compileMetadata converts a descriptor's metadata to the protobuf Struct
// the responses carry.
func compileMetadata(l *errList, line int, path string, m map[string]any) *structpb.Struct {
	st, err := structpb.NewStruct(m)
	if err != nil {
		l.add(line, path, "cannot be used as metadata: %v", err)
		return nil
	}
	return st
}

// headerNames is a validated ResponseHeaders; nil when the headers are off.
type headerNames struct{ limit, remaining, reset string }

func compileHeaders(l *errList, h ResponseHeaders) *headerNames {
	path := rootField + ".response_headers"
	names := []struct {
		field, name, def string
	}{
		{"limit_header", h.Limit, DefaultLimitHeader},
		{"remaining_header", h.Remaining, DefaultRemainingHeader},
		{"reset_header", h.Reset, DefaultResetHeader},
	}
	seen := map[string]string{}
	ok := true
	for i := range names {
		n := &names[i]
		if n.name == "" {
			n.name = n.def
		}
		if !isToken(n.name) {
			l.add(h.Line, path+"."+n.field, "%q is not an HTTP header name", n.name)
			ok = false
			continue
		}
		lower := strings.ToLower(n.name)
		if other, dup := seen[lower]; dup {
			l.add(h.Line, path+"."+n.field, "%q is already the %s", n.name, other)
			ok = false
		}
		seen[lower] = n.field
	}
	if !h.Enabled || !ok {
		return nil
	}
	return &headerNames{limit: names[0].name, remaining: names[1].name, reset: names[2].name}
}

// isToken reports whether s is an RFC 9110 token (a valid header name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
