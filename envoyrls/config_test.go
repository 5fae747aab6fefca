package envoyrls

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	"go.yaml.in/yaml/v3"
)

// referenceConfig holds files in the reference service's format (its README
// examples), as a list.
const referenceConfig = `
- domain: mongo_cps
  descriptors:
    - key: database
      value: users
      rate_limit:
        unit: second
        requests_per_unit: 500
    - key: database
      value: default
      rate_limit:
        unit: SECOND
        requests_per_unit: 500
- domain: messaging
  descriptors:
    # Only allow 5 marketing messages a day
    - key: message_type
      value: marketing
      descriptors:
        - key: to_number
          rate_limit:
            unit: day
            requests_per_unit: 5
    - key: to_number
      rate_limit:
        unit: day
        requests_per_unit: 100
- domain: edge_proxy_per_ip
  descriptors:
    - key: remote_address
      rate_limit:
        unit: second
        requests_per_unit: 10
    - key: remote_address
      value: 50.0.0.5
      rate_limit:
        unit: second
        requests_per_unit: 0
- domain: internal
  descriptors:
    - key: ldap
      rate_limit:
        unlimited: true
    - key: azure
      rate_limit:
        unit: minute
        requests_per_unit: 100
- domain: example6
  descriptors:
    - key: service
      descriptors:
        - key: user
          value: user-a
          rate_limit:
            requests_per_unit: 10
            unit: second
          shadow_mode: true
        - key: user
          value: user-b
          rate_limit:
            requests_per_unit: 20
            unit: second
- domain: example7
  descriptors:
    - key: key_1
      value: value_1
      descriptors:
        - key: user
          value: bkthomps
          rate_limit:
            name: specific_limit
            requests_per_unit: 5
            unit: second
    - key: key_2
      value: value_2
      descriptors:
        - key: user
          value: bkthomps
          rate_limit:
            replaces:
              - name: specific_limit
            requests_per_unit: 10
            unit: second
- domain: example8
  descriptors:
    - key: key1
      detailed_metric: true
      rate_limit:
        unit: minute
        requests_per_unit: 10
    - key: key1
      value: value1
      value_to_metric: true
      rate_limit:
        unit: minute
        requests_per_unit: 20
- domain: example9
  descriptors:
    - key: key1
      value: value*
      share_threshold: true
      rate_limit:
        unit: week
        requests_per_unit: 20
    - key: key1
      value: "*"
      rate_limit:
        unit: hour
        requests_per_unit: 7
`

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func TestParseReferenceFiles(t *testing.T) {
	c := mustParse(t, referenceConfig)
	var names []string
	for _, d := range c.Domains {
		names = append(names, d.Name)
	}
	want := []string{"mongo_cps", "messaging", "edge_proxy_per_ip", "internal", "example6", "example7", "example8", "example9"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("got domains %q, want %q", names, want)
	}
	for _, tc := range []struct {
		domain int
		want   []Descriptor
	}{
		{1, []Descriptor{
			{Key: "message_type", Value: "marketing", Descriptors: []Descriptor{
				{Key: "to_number", RateLimit: &RateLimit{Unit: UnitDay, RequestsPerUnit: 5}},
			}},
			{Key: "to_number", RateLimit: &RateLimit{Unit: UnitDay, RequestsPerUnit: 100}},
		}},
		{3, []Descriptor{
			{Key: "ldap", RateLimit: &RateLimit{Unlimited: true}},
			{Key: "azure", RateLimit: &RateLimit{Unit: UnitMinute, RequestsPerUnit: 100}},
		}},
		{5, []Descriptor{
			{Key: "key_1", Value: "value_1", Descriptors: []Descriptor{
				{Key: "user", Value: "bkthomps", RateLimit: &RateLimit{Name: "specific_limit", Unit: UnitSecond, RequestsPerUnit: 5}},
			}},
			{Key: "key_2", Value: "value_2", Descriptors: []Descriptor{
				{Key: "user", Value: "bkthomps", RateLimit: &RateLimit{Replaces: []string{"specific_limit"}, Unit: UnitSecond, RequestsPerUnit: 10}},
			}},
		}},
		{7, []Descriptor{
			{Key: "key1", Value: "value*", ShareThreshold: true, RateLimit: &RateLimit{Unit: UnitWeek, RequestsPerUnit: 20}},
			{Key: "key1", Value: "*", RateLimit: &RateLimit{Unit: UnitHour, RequestsPerUnit: 7}},
		}},
	} {
		got := withoutLines(c.Domains[tc.domain].Descriptors)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("domain %s descriptors:\ngot  %s\nwant %s", c.Domains[tc.domain].Name, dump(got), dump(tc.want))
		}
	}
	if got := c.Domains[4].Descriptors[0].Descriptors[0]; !got.ShadowMode || got.Line == 0 {
		t.Errorf("example6 user-a: got shadow_mode %v line %d, want true and a line", got.ShadowMode, got.Line)
	}
}

// withoutLines returns a copy of ds with every Line zeroed.
func withoutLines(ds []Descriptor) []Descriptor {
	if ds == nil {
		return nil
	}
	out := make([]Descriptor, len(ds))
	for i, d := range ds {
		d.Line = 0
		if d.RateLimit != nil {
			rl := *d.RateLimit
			rl.Line = 0
			d.RateLimit = &rl
		}
		d.Descriptors = withoutLines(d.Descriptors)
		out[i] = d
	}
	return out
}

func dump(ds []Descriptor) string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(fmt.Sprintf("{%s=%s shadow=%v share=%v", d.Key, d.Value, d.ShadowMode, d.ShareThreshold))
		if d.RateLimit != nil {
			b.WriteString(fmt.Sprintf(" limit=%+v", *d.RateLimit))
		}
		if len(d.Descriptors) > 0 {
			b.WriteString(" [" + dump(d.Descriptors) + "]")
		}
		b.WriteString("} ")
	}
	return b.String()
}

func TestParseEmpty(t *testing.T) {
	for _, src := range []string{"", "~", "[]"} {
		c, err := Parse([]byte(src))
		if err != nil {
			t.Errorf("Parse(%q): %v", src, err)
			continue
		}
		if len(c.Domains) != 0 {
			t.Errorf("Parse(%q): got %d domains, want 0", src, len(c.Domains))
		}
	}
}

// The server's configuration file holds the list under envoy_ratelimit; a
// struct field of type *Config decodes it.
func TestUnmarshalYAMLInsideAFile(t *testing.T) {
	src := `
redis_key_prefix: x
envoy_ratelimit:
  - domain: edge
    descriptors:
      - key: remote_address
        rate_limit: {unit: minute, requests_per_unit: 3}
`
	var file struct {
		RedisKeyPrefix string  `yaml:"redis_key_prefix"`
		EnvoyRateLimit *Config `yaml:"envoy_ratelimit"`
	}
	if err := yaml.Unmarshal([]byte(src), &file); err != nil {
		t.Fatal(err)
	}
	if file.EnvoyRateLimit == nil || len(file.EnvoyRateLimit.Domains) != 1 {
		t.Fatalf("got %+v, want one domain", file.EnvoyRateLimit)
	}
	if file.EnvoyRateLimit.compiled == nil {
		t.Errorf("decoded config is not compiled")
	}

	bad := strings.Replace(src, "minute", "fortnight", 1)
	err := yaml.Unmarshal([]byte(bad), &file)
	if err == nil || !strings.Contains(err.Error(), "line 7: envoy_ratelimit[0].descriptors[0].rate_limit.unit") {
		t.Errorf("got error %v, want one naming line 7 and the unit field", err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []string // substrings of the error
	}{
		{"not a list", "domain: x", []string{"line 1: envoy_ratelimit: want a list"}},
		{"unknown top-level field", `
- domain: x
  descriptor: []`, []string{"line 3: envoy_ratelimit[0].descriptor: unknown field"}},
		{"missing domain", `
- descriptors: []`, []string{"line 2: envoy_ratelimit[0].domain: is required"}},
		{"empty domain", `
- domain: ""`, []string{"envoy_ratelimit[0].domain: must not be empty"}},
		{"duplicate domain", `
- domain: x
- domain: x`, []string{"line 3: envoy_ratelimit[1].domain: duplicate domain \"x\""}},
		{"unknown descriptor field", `
- domain: x
  descriptors:
    - key: a
      vaule: b`, []string{"line 5: envoy_ratelimit[0].descriptors[0].vaule: unknown field"}},
		{"unknown rate_limit field", `
- domain: x
  descriptors:
    - key: a
      rate_limit: {unit: second, requests_per_unit: 1, burst: 3}`, []string{"line 5: envoy_ratelimit[0].descriptors[0].rate_limit.burst: unknown field"}},
		{"missing key", `
- domain: x
  descriptors:
    - value: a`, []string{"line 4: envoy_ratelimit[0].descriptors[0].key: is required"}},
		{"bad unit", `
- domain: x
  descriptors:
    - key: a
      rate_limit:
        unit: fortnight
        requests_per_unit: 3`, []string{"line 6: envoy_ratelimit[0].descriptors[0].rate_limit.unit: unknown unit \"fortnight\""}},
		{"missing unit", `
- domain: x
  descriptors:
    - key: a
      rate_limit:
        requests_per_unit: 3`, []string{"line 6: envoy_ratelimit[0].descriptors[0].rate_limit.unit: is required"}},
		{"missing requests_per_unit", `
- domain: x
  descriptors:
    - key: a
      rate_limit:
        unit: second`, []string{"envoy_ratelimit[0].descriptors[0].rate_limit.requests_per_unit: is required"}},
		{"negative requests_per_unit", `
- domain: x
  descriptors:
    - key: a
      rate_limit: {unit: second, requests_per_unit: -1}`, []string{"rate_limit.requests_per_unit: must be between 0 and 4294967295, got -1"}},
		{"fractional requests_per_unit", `
- domain: x
  descriptors:
    - key: a
      rate_limit: {unit: second, requests_per_unit: 1.5}`, []string{"rate_limit.requests_per_unit: want a whole number"}},
		{"inexact limit", `
- domain: x
  descriptors:
    - key: a
      rate_limit: {unit: day, requests_per_unit: 99991}`, []string{"line 5: envoy_ratelimit[0].descriptors[0].rate_limit.requests_per_unit: 99991 per day cannot be an exact bucket"}},
		{"unlimited with unit", `
- domain: x
  descriptors:
    - key: a
      rate_limit: {unlimited: true, unit: second}`, []string{"rate_limit.unit: must not be set when unlimited is true"}},
		{"shadow_mode not a bool", `
- domain: x
  descriptors:
    - key: a
      shadow_mode: yes please`, []string{"line 5: envoy_ratelimit[0].descriptors[0].shadow_mode: want true or false"}},
		{"duplicate descriptor", `
- domain: x
  descriptors:
    - key: a
      value: b
    - key: a
      value: b`, []string{"line 6: envoy_ratelimit[0].descriptors[1]: duplicate descriptor: key \"a\" value \"b\""}},
		{"duplicate key-only nested", `
- domain: x
  descriptors:
    - key: a
      descriptors:
        - key: b
        - key: b`, []string{"line 7: envoy_ratelimit[0].descriptors[0].descriptors[1]: duplicate descriptor: key \"b\" without value"}},
		{"duplicate field", `
- domain: x
  domain: y`, []string{"line 3: envoy_ratelimit[0].domain: duplicate field"}},
		{"share_threshold without wildcard", `
- domain: x
  descriptors:
    - key: a
      value: b
      share_threshold: true`, []string{"envoy_ratelimit[0].descriptors[0].share_threshold: needs a wildcard value"}},
		{"empty replaces", `
- domain: x
  descriptors:
    - key: a
      rate_limit:
        unit: second
        requests_per_unit: 1
        replaces: [{name: ""}]`, []string{"rate_limit.replaces[0].name: must not be empty"}},
		{"replaces itself", `
- domain: x
  descriptors:
    - key: a
      rate_limit:
        name: me
        unit: second
        requests_per_unit: 1
        replaces: [{name: me}]`, []string{"rate_limit.replaces[0].name: must not name the limit itself"}},
		{"descriptors not a list", `
- domain: x
  descriptors: {key: a}`, []string{"line 3: envoy_ratelimit[0].descriptors: want a list"}},
		{"several errors reported", `
- domain: x
  descriptors:
    - key: a
      rate_limit: {unit: sec, requests_per_unit: 1}
    - key: b
      colour: red`, []string{"line 5: envoy_ratelimit[0].descriptors[0].rate_limit.unit", "line 7: envoy_ratelimit[0].descriptors[1].colour: unknown field"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src))
			if err == nil {
				t.Fatalf("Parse: got no error, want %q", tc.want)
			}
			t.Logf("error: %v", err)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("got %v, want an error matching ErrInvalidConfig", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestValidateConfigBuiltInCode(t *testing.T) {
	_, err := NewConfig([]Domain{{Name: "x", Descriptors: []Descriptor{
		{Key: "a", RateLimit: &RateLimit{RequestsPerUnit: 3}},
	}}})
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "envoy_ratelimit[0].descriptors[0].rate_limit.unit" {
		t.Fatalf("got %v, want a *ConfigError on the unit", err)
	}
	c, err := NewConfig([]Domain{{Name: "x", Descriptors: []Descriptor{
		{Key: "a", RateLimit: &RateLimit{Unit: UnitMinute, RequestsPerUnit: 3}},
	}}})
	if err != nil || c.compiled == nil {
		t.Fatalf("got %v, %v; want a compiled config", c, err)
	}
}

func entries(kv ...string) []*commonv3.RateLimitDescriptor_Entry {
	var out []*commonv3.RateLimitDescriptor_Entry
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, &commonv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

// Matching follows the reference service: key+value, then wildcard, then
// key alone, level by level; the limit applies only where the entries end.
func TestLookup(t *testing.T) {
	c := mustParse(t, referenceConfig+`
- domain: levels
  descriptors:
    - key: a
      rate_limit: {unit: second, requests_per_unit: 1}
      descriptors:
        - key: b
          rate_limit: {unit: second, requests_per_unit: 2}
    - key: a
      value: x
      descriptors:
        - key: b
          value: "y*"
          rate_limit: {unit: second, requests_per_unit: 3}
`)
	tbl := c.compiled
	for _, tc := range []struct {
		domain  string
		entries []string
		want    uint32 // requests_per_unit; 0 with unlimited/none below
		none    bool   // no rule
	}{
		{"mongo_cps", []string{"database", "users"}, 500, false},
		{"mongo_cps", []string{"database", "other"}, 0, true},
		{"edge_proxy_per_ip", []string{"remote_address", "50.0.0.1"}, 10, false},
		{"edge_proxy_per_ip", []string{"remote_address", "50.0.0.5"}, 0, false}, // blocked: 0 per second
		{"edge_proxy_per_ip", []string{"remote_address", ""}, 10, false},
		{"messaging", []string{"message_type", "marketing", "to_number", "2061111111"}, 5, false},
		{"messaging", []string{"to_number", "2061111111"}, 100, false},
		{"messaging", []string{"message_type", "marketing"}, 0, true}, // placeholder without a limit
		{"messaging", []string{"message_type", "other", "to_number", "1"}, 0, true},
		{"example9", []string{"key1", "value1"}, 20, false},
		{"example9", []string{"key1", "valu"}, 7, false},    // the "*" wildcard
		{"example9", []string{"key1", "value*"}, 20, false}, // literal match of the wildcard
		{"example9", []string{"key2", "value1"}, 0, true},
		{"nope", []string{"database", "users"}, 0, true},
		// Example 4: more entries than levels is no match.
		{"mongo_cps", []string{"database", "users", "sub", "x"}, 0, true},
		{"levels", []string{"a", "q"}, 1, false},
		{"levels", []string{"a", "q", "b", "r"}, 2, false},
		{"levels", []string{"a", "x", "b", "yes"}, 3, false},
		// a=x matched its own descriptor (no b without value below it).
		{"levels", []string{"a", "x", "b", "no"}, 0, true},
		{"levels", []string{"a", "x"}, 0, true},
	} {
		r, _ := tbl.lookup(tc.domain, entries(tc.entries...))
		switch {
		case tc.none && r != nil:
			t.Errorf("%s %v: got a limit of %d per %s, want none", tc.domain, tc.entries, r.rpu, r.unit)
		case !tc.none && r == nil:
			t.Errorf("%s %v: got no limit, want %d", tc.domain, tc.entries, tc.want)
		case !tc.none && r.rpu != tc.want:
			t.Errorf("%s %v: got %d per %s, want %d", tc.domain, tc.entries, r.rpu, r.unit, tc.want)
		}
	}
}

func TestBucketKey(t *testing.T) {
	for _, tc := range []struct {
		domain string
		kv     []string
		shared []string
		want   string
	}{
		{"edge", []string{"remote_address", "10.0.0.1"}, nil, "envoy:edge:remote_address=10.0.0.1"},
		{"d", []string{"a", "1", "b", "2"}, nil, "envoy:d:a=1:b=2"},
		{"d", []string{"a:b", "c"}, nil, "envoy:d:a%3Ab=c"},
		{"d", []string{"a", "b:c"}, nil, "envoy:d:a=b%3Ac"},
		{"d", []string{"a=b", "c"}, nil, "envoy:d:a%3Db=c"},
		{"d", []string{"a", "b=c"}, nil, "envoy:d:a=b%3Dc"},
		{"d:x", []string{"a", "b"}, nil, "envoy:d%3Ax:a=b"},
		{"d", []string{"a", "%3A{}"}, nil, "envoy:d:a=%253A%7B%7D"},
		{"d", []string{"a", "value1", "b", "2"}, []string{"value*", ""}, "envoy:d:a=value*:b=2"},
	} {
		if got := bucketKey("envoy", tc.domain, entries(tc.kv...), tc.shared); got != tc.want {
			t.Errorf("bucketKey(%q, %q): got %q, want %q", tc.domain, tc.kv, got, tc.want)
		}
	}
}
