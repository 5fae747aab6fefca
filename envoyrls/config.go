package envoyrls

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/topdeck/resilience/limiter"
)

// Config is the rate limit configuration: a list of domains, each like one
// configuration file of Envoy's reference rate limit service.
//
// Build one with [DecodeYAML], [Parse] or [NewConfig], which validate it.
// A Config must not be changed after it is handed to a Server; it is then
// safe for concurrent use. The zero value is a valid, empty configuration
// (every request is OK).
type Config struct {
	// Domains in configuration order.
	Domains []Domain

	compiled *table // set by validation; nil until then
}

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
	// specific siblings); a value ending in '*' matches the values that
	// start with what precedes it.
	Value string
	// RateLimit is the limit applied when a request descriptor ends here;
	// nil for none.
	RateLimit *RateLimit
	// ShadowMode reports OVER_LIMIT decisions of this limit as OK.
	ShadowMode bool
	// ShareThreshold (wildcard values only) makes every value matched by
	// the wildcard share one bucket.
	ShareThreshold bool
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
// RateLimitResponse.RateLimit.Unit.
const (
	UnitSecond Unit = 1
	UnitMinute Unit = 2
	UnitHour   Unit = 3
	UnitDay    Unit = 4
	UnitMonth  Unit = 5
	UnitYear   Unit = 6
	UnitWeek   Unit = 7
)

var unitNames = map[Unit]string{
	UnitSecond: "second", UnitMinute: "minute", UnitHour: "hour", UnitDay: "day",
	UnitWeek: "week", UnitMonth: "month", UnitYear: "year",
}

var unitDurations = map[Unit]time.Duration{
	UnitSecond: time.Second,
	UnitMinute: time.Minute,
	UnitHour:   time.Hour,
	UnitDay:    24 * time.Hour,
	UnitWeek:   7 * 24 * time.Hour,
	UnitMonth:  30 * 24 * time.Hour,
	UnitYear:   365 * 24 * time.Hour,
}

// ParseUnit parses a unit name, case-insensitively: second, minute, hour,
// day, week, month or year.
func ParseUnit(s string) (Unit, bool) {
	for u, name := range unitNames {
		if strings.EqualFold(s, name) {
			return u, true
		}
	}
	return 0, false
}

// String returns the unit's name ("second"), or "Unit(n)".
func (u Unit) String() string {
	if s, ok := unitNames[u]; ok {
		return s
	}
	return fmt.Sprintf("Unit(%d)", int(u))
}

// Duration is the unit's length (months are 30 days, years 365); 0 for an
// unknown unit.
func (u Unit) Duration() time.Duration { return unitDurations[u] }

// Valid reports whether u is one of the units.
func (u Unit) Valid() bool { _, ok := unitNames[u]; return ok }

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

// errList collects ConfigErrors.
type errList struct{ errs ConfigErrors }

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
	t := &table{domains: make(map[string]*level, len(c.Domains))}
	for i, d := range c.Domains {
		path := fmt.Sprintf("%s[%d]", rootField, i)
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
			n.rule = compileRule(l, line, p+".rate_limit", d.RateLimit, d.ShadowMode)
		}
		wild := strings.HasSuffix(d.Value, "*")
		if d.ShareThreshold {
			if !wild {
				l.add(line, p+".share_threshold", "needs a wildcard value (ending in '*'), got value %q", d.Value)
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
			lv.wildcards = append(lv.wildcards, wildcard{key: d.Key, prefix: strings.TrimSuffix(d.Value, "*"), n: n})
		}
	}
	return lv
}

func compileRule(l *errList, line int, path string, rl *RateLimit, shadow bool) *rule {
	if rl.Line != 0 {
		line = rl.Line
	}
	r := &rule{name: rl.Name, replaces: rl.Replaces, shadow: shadow, unlimited: rl.Unlimited,
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
