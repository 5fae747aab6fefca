package envoyrls

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// parseReference loads files of testdata/reference (one domain document
// each, as the reference service reads them) as one configuration: the
// documents become the items of the envoy_ratelimit list, lines kept.
func parseReference(t *testing.T, names ...string) (*Config, error) {
	t.Helper()
	list := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join("testdata", "reference", name))
		if err != nil {
			t.Fatal(err)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return nil, errors.Join(ErrInvalidConfig, err)
		}
		if len(doc.Content) > 0 {
			list.Content = append(list.Content, doc.Content[0])
		}
	}
	return DecodeYAML(list)
}

// Every valid file of the reference service loads.
func TestReferenceFilesLoad(t *testing.T) {
	for _, name := range []string{
		"basic_config.yaml", "shadowmode_config.yaml", "wildcard.yaml", "share_threshold.yaml",
		"metadata.yaml", "merge_domain_key1.yaml", "merge_domain_key2.yaml", "examples_config.yaml", "examples_example.yaml",
	} {
		if _, err := parseReference(t, name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The reference's invalid files are refused with an error naming the
// problem (its own test expectations, in this package's words).
func TestReferenceInvalidFiles(t *testing.T) {
	for _, tc := range []struct {
		files []string
		want  []string
	}{
		{[]string{"bad_limit_unit.yaml"}, []string{"line 6: envoy_ratelimit[0].descriptors[0].rate_limit.unit: unknown unit \"foo\""}},
		{[]string{"bad_yaml.yaml"}, []string{"yaml: line 2: found unexpected end of stream"}},
		{[]string{"basic_config.yaml", "duplicate_domain.yaml"}, []string{"envoy_ratelimit[1].domain: duplicate domain \"test-domain\""}},
		{[]string{"merge_domain_key1.yaml", "merge_domain_key2.yaml"}, []string{"envoy_ratelimit[1].domain: duplicate domain \"test-domain\""}},
		{[]string{"duplicate_key.yaml"}, []string{"line 6: envoy_ratelimit[0].descriptors[1]: duplicate descriptor: key \"key1\" value \"value1\""}},
		{[]string{"empty_domain.yaml"}, []string{"envoy_ratelimit[0].domain: is required"}},
		{[]string{"empty_key.yaml"}, []string{"line 3: envoy_ratelimit[0].descriptors[0].key: is required"}},
		{[]string{"misspelled_key.yaml"}, []string{"line 5: envoy_ratelimit[0].descriptors[0].ratelimit: unknown field"}},
		{[]string{"misspelled_key2.yaml"}, []string{"line 7: envoy_ratelimit[0].descriptors[0].rate_limit.requestsperunit: unknown field"}},
		{[]string{"non_map_list.yaml"}, []string{"line 3: envoy_ratelimit[0].descriptors[0]: want a mapping, got \"a\""}},
		{[]string{"non_string_key.yaml"}, []string{"line 1: envoy_ratelimit[0].0.25: unknown field", "envoy_ratelimit[0].domain: is required"}},
		{[]string{"replaces_empty.yaml"}, []string{"envoy_ratelimit[0].descriptors[0].descriptors[0].rate_limit.replaces[0].name"}},
		{[]string{"replaces_self.yaml"}, []string{"rate_limit.replaces[0].name: must not name the limit itself (\"self\")"}},
		{[]string{"unlimited_with_unit.yaml"}, []string{"rate_limit.unit: must not be set when unlimited is true", "rate_limit.requests_per_unit: must not be set when unlimited is true"}},
	} {
		name := strings.Join(tc.files, "+")
		_, err := parseReference(t, tc.files...)
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: got %v, want an error matching ErrInvalidConfig", name, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: got error %q, want it to contain %q", name, err, w)
			}
		}
	}
}

func TestPatternMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, value string
		want           bool
	}{
		{"foo*", "foo", true},
		{"foo*", "foo1", true},
		{"foo*", "fo", false},
		{"*", "", true},
		{"*", "anything", true},
		{"*foo", "xfoo", true},
		{"*foo", "foox", false},
		{"bar*b", "barab", true},
		{"bar*b", "bar123b", true},
		{"bar*b", "barb", true},
		{"bar*b", "bara", false},
		{"bar*b", "xbarb", false},
		{"bar*b", "bar", false}, // prefix and suffix must not overlap
		{"foo*bar*baz", "foo123bar456baz", true},
		{"foo*bar*baz", "foobarbaz", true},
		{"foo*bar*baz", "foo123baz", false},
		{"foo*bar*baz", "bar456baz", false},
		{"foo*bar*baz", "foobazbar", false},
		{"foo*bar*baz", "foobarbarbaz", true},
		{"a*a*a", "aaa", true},
		{"a*a*a", "aa", false},
		{"/api/*/resource/*/action", "/api/v1/resource/123/action", true},
		{"/api/*/resource/*/action", "/api/v1/resource/123/other", false},
		{"**", "", true},
		{"a**b", "ab", true},
		{"*ab*", "xxaxbx", false},
		{"*ab*", "xxabx", true},
	} {
		if got := compilePattern(tc.pattern).match(tc.value); got != tc.want {
			t.Errorf("%q matches %q: got %v, want %v", tc.pattern, tc.value, got, tc.want)
		}
	}
}

// The reference's wildcard.yaml and share_threshold.yaml cases: a '*'
// anywhere matches, and share_threshold shares one bucket among the
// values a middle or multiple wildcard matches.
func TestLookupReferenceWildcards(t *testing.T) {
	c, err := parseReference(t, "wildcard.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		entries []string
		want    uint32 // requests_per_unit; 0: no limit
	}{
		{[]string{"noVal", "foo1"}, 20},
		{[]string{"wild", "foo1"}, 20},
		{[]string{"wild", "foo"}, 20},
		{[]string{"wild", "bar"}, 0},
		{[]string{"noWild", "foo1"}, 0},
		{[]string{"nestedWild", "val1", "wild", "goo2"}, 20},
		{[]string{"midWild", "barab"}, 20},
		{[]string{"midWild", "bar123b"}, 20},
		{[]string{"midWild", "barb"}, 20},
		{[]string{"midWild", "bara"}, 0},
		{[]string{"midWild", "xbarb"}, 0},
		{[]string{"multiWild", "foo123bar456baz"}, 10},
		{[]string{"multiWild", "foobarbaz"}, 10},
		{[]string{"multiWild", "foo123baz"}, 0},
		{[]string{"multiWild", "bar456baz"}, 0},
	} {
		r, shared := c.compiled.lookup("test-domain", entries(tc.entries...))
		switch {
		case tc.want == 0 && r != nil:
			t.Errorf("%v: got %d per %s, want no limit", tc.entries, r.rpu, r.unit)
		case tc.want != 0 && (r == nil || r.rpu != tc.want):
			t.Errorf("%v: got %+v, want %d per minute", tc.entries, r, tc.want)
		case shared != nil:
			t.Errorf("%v: got shared %q without share_threshold", tc.entries, shared)
		}
	}

	c, err = parseReference(t, "share_threshold.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		entries []string
		want    uint32
		key     string // the bucket key
	}{
		{[]string{"files", "files/a.pdf"}, 100, "envoy:test-domain:files=files/*"},
		{[]string{"files", "files/b.csv"}, 100, "envoy:test-domain:files=files/*"},
		{[]string{"nested", "parent", "files", "nested/x"}, 200, "envoy:test-domain:nested=parent:files=nested/*"},
		{[]string{"files", "top/1", "files", "nested/2"}, 300, "envoy:test-domain:files=top/*:files=nested/*"},
		{[]string{"path", "path/a", "file", "file/b", "type", "t"}, 120, "envoy:test-domain:path=path/*:file=file/b:type=t"},
		{[]string{"file", "test1"}, 50, "envoy:test-domain:file=test1"}, // the exact value wins
		{[]string{"file", "test2"}, 100, "envoy:test-domain:file=test*"},
		{[]string{"midpath", "/api/users/v1"}, 100, "envoy:test-domain:midpath=/api*v1"},
		{[]string{"midpath", "/apiv1"}, 100, "envoy:test-domain:midpath=/api*v1"},
		{[]string{"midpath", "/api/users/v2"}, 0, ""},
		{[]string{"multiroute", "svc1ep2rpc"}, 50, "envoy:test-domain:multiroute=svc*ep*rpc"},
		{[]string{"midroute", "/api/x/v2"}, 80, "envoy:test-domain:midroute=/api*v2"},
		{[]string{"tenant", "t1prod", "resource", "res9v2"}, 60, "envoy:test-domain:tenant=t*prod:resource=res*v2"},
		{[]string{"tenant", "t1prod", "resource", "res9v3"}, 0, ""},
	} {
		e := entries(tc.entries...)
		r, shared := c.compiled.lookup("test-domain", e)
		if tc.want == 0 {
			if r != nil {
				t.Errorf("%v: got %d per %s, want no limit", tc.entries, r.rpu, r.unit)
			}
			continue
		}
		if r == nil || r.rpu != tc.want {
			t.Errorf("%v: got %+v, want %d per minute", tc.entries, r, tc.want)
			continue
		}
		if got := bucketKey("envoy", "test-domain", e, shared); got != tc.key {
			t.Errorf("%v: got bucket %q, want %q", tc.entries, got, tc.key)
		}
	}
}

// Among wildcards of one key the first in configuration order wins, as in
// the reference; an exact value beats them, and they beat no value.
func TestLookupWildcardPrecedence(t *testing.T) {
	c := mustParse(t, `
- domain: d
  descriptors:
    - key: p
      rate_limit: {unit: minute, requests_per_unit: 1}
    - key: p
      value: /a*
      rate_limit: {unit: minute, requests_per_unit: 2}
    - key: p
      value: /a/*/x
      rate_limit: {unit: minute, requests_per_unit: 3}
    - key: p
      value: /a/b/x
      rate_limit: {unit: minute, requests_per_unit: 4}
    - key: q
      value: /a/*/x
      rate_limit: {unit: minute, requests_per_unit: 5}
    - key: q
      value: /a*
      rate_limit: {unit: minute, requests_per_unit: 6}
`)
	for _, tc := range []struct {
		kv   []string
		want uint32
	}{
		{[]string{"p", "/a/b/x"}, 4},
		{[]string{"p", "/a/c/x"}, 2},
		{[]string{"p", "/b"}, 1},
		{[]string{"q", "/a/c/x"}, 5},
		{[]string{"q", "/a/c/y"}, 6},
	} {
		r, _ := c.compiled.lookup("d", entries(tc.kv...))
		if r == nil || r.rpu != tc.want {
			t.Errorf("%v: got %+v, want %d per minute", tc.kv, r, tc.want)
		}
	}
}

// metadata decodes as any YAML value the reference's protobuf Struct holds,
// and sits on the limit that goes with it.
func TestMetadataDecoding(t *testing.T) {
	c, err := parseReference(t, "metadata.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, _ := c.compiled.lookup("test-domain", entries("key1", "value1", "subkey1", "something"))
	if r == nil || r.metadata.GetFields()["name"].GetStringValue() != "service_1" {
		t.Errorf("key1=value1 subkey1: got metadata %v, want name service_1", r.metadata)
	}
	r, _ = c.compiled.lookup("test-domain", entries("key2", "x"))
	if got := r.metadata.GetFields()["service_with_quota"].GetStructValue().GetFields()["name"].GetStringValue(); got != "service_2" {
		t.Errorf("key2: got metadata %v, want service_with_quota.name service_2", r.metadata)
	}
	r, _ = c.compiled.lookup("test-domain", entries("key1", "value1", "subkey1", "subvalue1"))
	if r == nil || r.metadata != nil {
		t.Errorf("subvalue1: got %+v, want a limit without metadata", r)
	}

	c = mustParse(t, `
- domain: d
  descriptors:
    - key: k
      quota_mode: true
      rate_limit: {unit: minute, requests_per_unit: 1}
      metadata:
        s: text
        n: 42
        f: 1.5
        b: true
        z: null
        date: 2024-01-02
        list: [1, two, {three: 3}]
        nested: &n {a: {b: c}}
        again: *n
`)
	r, _ = c.compiled.lookup("d", entries("k", "v"))
	want, err := structpb.NewStruct(map[string]any{
		"s": "text", "n": 42, "f": 1.5, "b": true, "z": nil, "date": "2024-01-02",
		"list":   []any{1, "two", map[string]any{"three": 3}},
		"nested": map[string]any{"a": map[string]any{"b": "c"}},
		"again":  map[string]any{"a": map[string]any{"b": "c"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !r.quota || r.metadata.String() != want.String() {
		t.Errorf("got quota %v metadata %v, want quota and %v", r.quota, r.metadata, want)
	}
}

// The section may be a mapping: the domains under domains, with the
// settings the reference reads from its environment.
func TestParseSettings(t *testing.T) {
	c := mustParse(t, `
response_headers:
  enabled: true
  reset_header: X-RateLimit-Reset
response_dynamic_metadata: true
shadow_mode: true
quota_mode: true
domains:
  - domain: edge
    descriptors:
      - key: remote_address
        rate_limit: {unit: minute, requests_per_unit: 3}
`)
	if len(c.Domains) != 1 || !c.ResponseHeaders.Enabled || c.ResponseHeaders.Reset != "X-RateLimit-Reset" ||
		!c.ResponseDynamicMetadata || !c.ShadowMode || !c.QuotaMode {
		t.Errorf("got %+v", c)
	}
	want := headerNames{limit: DefaultLimitHeader, remaining: DefaultRemainingHeader, reset: "X-RateLimit-Reset"}
	if c.compiled.headers == nil || *c.compiled.headers != want {
		t.Errorf("got headers %+v, want %+v", c.compiled.headers, want)
	}
	c = mustParse(t, "response_headers: {enabled: false}\n")
	if c.compiled.headers != nil || len(c.Domains) != 0 {
		t.Errorf("disabled headers: got %+v", c.compiled)
	}

	for _, tc := range []struct{ name, src, want string }{
		{"unknown setting", "domain_list: []", "line 1: envoy_ratelimit.domain_list: unknown field (want one of domains, response_headers"},
		{"a bare domain document", "domain: x\ndescriptors: []", "line 1: envoy_ratelimit: want a list of domain documents"},
		{"domains not a list", "domains: {domain: x}", "line 1: envoy_ratelimit.domains: want a list"},
		{"error inside domains", "domains:\n  - domain: x\n    descriptors: [{key: a, rate_limit: {unit: fortnight, requests_per_unit: 1}}]",
			"line 3: envoy_ratelimit.domains[0].descriptors[0].rate_limit.unit: unknown unit \"fortnight\""},
		{"duplicate domain inside domains", "domains: [{domain: x}, {domain: x}]", "envoy_ratelimit.domains[1].domain: duplicate domain"},
		{"bad header name", "response_headers:\n  enabled: true\n  limit_header: \"Rate Limit\"", "line 2: envoy_ratelimit.response_headers.limit_header: \"Rate Limit\" is not an HTTP header name"},
		{"same header twice", "response_headers: {enabled: true, remaining_header: ratelimit-limit}", "envoy_ratelimit.response_headers.remaining_header: \"ratelimit-limit\" is already the limit_header"},
		{"unknown header field", "response_headers: {enabled: true, policy_header: x}", "envoy_ratelimit.response_headers.policy_header: unknown field"},
		{"enabled not a bool", "response_headers: {enabled: yes please}", "envoy_ratelimit.response_headers.enabled: want true or false"},
		{"quota_mode not a bool", "quota_mode: 1", "envoy_ratelimit.quota_mode: want true or false"},
	} {
		_, err := Parse([]byte(tc.src))
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestParseErrorsNewFields(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"metadata not a mapping", `
- domain: x
  descriptors:
    - key: a
      metadata: [1, 2]`, "line 5: envoy_ratelimit[0].descriptors[0].metadata: want a mapping, got a list"},
		{"metadata with a list key", `
- domain: x
  descriptors:
    - key: a
      metadata: {[1]: 2}`, "envoy_ratelimit[0].descriptors[0].metadata: keys must be strings, got a list"},
		{"metadata duplicate key", `
- domain: x
  descriptors:
    - key: a
      metadata: {k: 1, k: 2}`, "envoy_ratelimit[0].descriptors[0].metadata.k: duplicate field"},
		{"quota_mode not a bool", `
- domain: x
  descriptors:
    - key: a
      quota_mode: sometimes`, "line 5: envoy_ratelimit[0].descriptors[0].quota_mode: want true or false"},
		{"share_threshold on a literal value", `
- domain: x
  descriptors:
    - key: a
      value: b
      share_threshold: true`, "envoy_ratelimit[0].descriptors[0].share_threshold: needs a wildcard value (containing '*'), got value \"b\""},
	} {
		_, err := Parse([]byte(tc.src))
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// YAML aliases cannot expand a small file into an enormous configuration.
func TestParseAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("- domain: x\n  descriptors:\n    - key: k0\n      metadata: &m0 {a: 1, b: 2, c: 3, d: 4}\n")
	for i := 1; i < 12; i++ {
		prev := "*m" + strconv.Itoa(i-1)
		b.WriteString("    - key: k" + strconv.Itoa(i) + "\n      metadata: &m" + strconv.Itoa(i) + " {a: " + prev + ", b: " + prev + ", c: " + prev + ", d: " + prev + "}\n")
	}
	_, err := Parse([]byte(b.String()))
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "too large") {
		t.Errorf("got %v, want a too large error", err)
	}
}

// Metadata built in code is checked too.
func TestValidateMetadataBuiltInCode(t *testing.T) {
	_, err := NewConfig([]Domain{{Name: "x", Descriptors: []Descriptor{
		{Key: "a", Metadata: map[string]any{"ch": make(chan int)}, RateLimit: &RateLimit{Unit: UnitMinute, RequestsPerUnit: 1}},
	}}})
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "envoy_ratelimit[0].descriptors[0].metadata" {
		t.Errorf("got %v, want a *ConfigError on the metadata", err)
	}
}
