package envoyrls

import (
	"fmt"
	"math"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Parse parses data, a YAML list of domain documents (the value of the
// envoy_ratelimit section, on its own), and validates it. See DecodeYAML.
func Parse(data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	return DecodeYAML(&root)
}

// DecodeYAML decodes n, a YAML sequence of domain documents (a null or empty
// node is an empty configuration), and validates the result. Errors name the
// line and the field (rooted at "envoy_ratelimit") and match
// ErrInvalidConfig; all of them are reported, as ConfigErrors when there
// are several.
func DecodeYAML(n *yaml.Node) (*Config, error) {
	var l errList
	c := &Config{}
	n = resolve(n)
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return c, nil
		}
		n = resolve(n.Content[0])
	}
	switch {
	case n.Kind == 0 || isNull(n):
		return c, c.Validate()
	case n.Kind == yaml.MappingNode && !looksLikeDomain(n):
		decodeSettings(&l, c, n)
	case n.Kind != yaml.SequenceNode:
		l.add(n.Line, rootField, "want a list of domain documents (- domain: ...) or a mapping with domains: and settings, got %s", kindName(n))
		return nil, l.err()
	default:
		c.Domains = decodeDomains(&l, n, rootField)
	}
	if err := l.err(); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// UnmarshalYAML implements yaml.Unmarshaler with DecodeYAML, so that a
// configuration struct can hold a *Config field.
func (c *Config) UnmarshalYAML(n *yaml.Node) error {
	got, err := DecodeYAML(n)
	if err != nil {
		return err
	}
	*c = *got
	return nil
}

// maxDecoded bounds the descriptors and metadata values one configuration
// may decode to, counting those that YAML aliases repeat, so that a small
// file cannot expand into an enormous configuration.
const maxDecoded = 200_000

// decodeDomains decodes a list of domain documents at path.
func decodeDomains(l *errList, n *yaml.Node, path string) []Domain {
	var out []Domain
	for i, item := range n.Content {
		if d, ok := decodeDomain(l, resolve(item), fmt.Sprintf("%s[%d]", path, i)); ok {
			out = append(out, d)
		}
	}
	return out
}

// looksLikeDomain reports whether the mapping n is a single domain document
// (a reference file pasted without its list dash) rather than the settings
// form.
func looksLikeDomain(n *yaml.Node) bool {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := resolve(n.Content[i]); k.Kind == yaml.ScalarNode && (k.Value == "domain" || k.Value == "descriptors") {
			return true
		}
	}
	return false
}

// decodeSettings decodes the mapping form of the section: the service-wide
// settings and the domains list.
func decodeSettings(l *errList, c *Config, n *yaml.Node) {
	f, ok := fields(l, n, rootField, "domains", "response_headers", "response_dynamic_metadata", "shadow_mode", "quota_mode")
	if !ok {
		return
	}
	c.domainsField = rootField + ".domains"
	if v := f["domains"]; v != nil && !isNull(v) {
		if v.Kind != yaml.SequenceNode {
			l.add(v.Line, c.domainsField, "want a list of domain documents (- domain: ...), got %s", kindName(v))
		} else {
			c.Domains = decodeDomains(l, v, c.domainsField)
		}
	}
	if v := f["response_headers"]; v != nil && !isNull(v) {
		path := rootField + ".response_headers"
		if hf, ok := fields(l, v, path, "enabled", "limit_header", "remaining_header", "reset_header"); ok {
			h := &c.ResponseHeaders
			h.Line = v.Line
			h.Enabled = boolean(l, hf["enabled"], path+".enabled")
			for _, x := range []struct {
				field string
				dst   *string
			}{{"limit_header", &h.Limit}, {"remaining_header", &h.Remaining}, {"reset_header", &h.Reset}} {
				if hv := hf[x.field]; hv != nil {
					*x.dst, _ = str(l, hv, path+"."+x.field)
				}
			}
		}
	}
	c.ResponseDynamicMetadata = boolean(l, f["response_dynamic_metadata"], rootField+".response_dynamic_metadata")
	c.ShadowMode = boolean(l, f["shadow_mode"], rootField+".shadow_mode")
	c.QuotaMode = boolean(l, f["quota_mode"], rootField+".quota_mode")
}

func decodeDomain(l *errList, n *yaml.Node, path string) (Domain, bool) {
	f, ok := fields(l, n, path, "domain", "descriptors")
	if !ok {
		return Domain{}, false
	}
	d := Domain{Line: n.Line, Name: requiredStr(l, f, n.Line, path, "domain")}
	if v := f["descriptors"]; v != nil {
		d.Descriptors = decodeDescriptors(l, v, path+".descriptors")
	}
	return d, true
}

func decodeDescriptors(l *errList, n *yaml.Node, path string) []Descriptor {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		l.add(n.Line, path, "want a list of descriptors, got %s", kindName(n))
		return nil
	}
	var out []Descriptor
	for i, item := range n.Content {
		if !l.spend(n.Line, path) {
			return out
		}
		item = resolve(item)
		p := fmt.Sprintf("%s[%d]", path, i)
		f, ok := fields(l, item, p, "key", "value", "rate_limit", "descriptors", "shadow_mode",
			"quota_mode", "share_threshold", "detailed_metric", "value_to_metric", "metadata")
		if !ok {
			continue
		}
		d := Descriptor{Line: item.Line, Key: requiredStr(l, f, item.Line, p, "key")}
		if v := f["value"]; v != nil {
			d.Value, _ = str(l, v, p+".value")
		}
		if v := f["rate_limit"]; v != nil {
			d.RateLimit = decodeRateLimit(l, v, p+".rate_limit")
		}
		if v := f["descriptors"]; v != nil {
			d.Descriptors = decodeDescriptors(l, v, p+".descriptors")
		}
		if v := f["metadata"]; v != nil && !isNull(v) {
			d.Metadata = decodeMetadata(l, v, p+".metadata")
		}
		d.ShadowMode = boolean(l, f["shadow_mode"], p+".shadow_mode")
		d.QuotaMode = boolean(l, f["quota_mode"], p+".quota_mode")
		d.ShareThreshold = boolean(l, f["share_threshold"], p+".share_threshold")
		d.DetailedMetric = boolean(l, f["detailed_metric"], p+".detailed_metric")
		d.ValueToMetric = boolean(l, f["value_to_metric"], p+".value_to_metric")
		out = append(out, d)
	}
	return out
}

func decodeRateLimit(l *errList, n *yaml.Node, path string) *RateLimit {
	f, ok := fields(l, n, path, "unit", "requests_per_unit", "unlimited", "name", "replaces")
	if !ok {
		return nil
	}
	rl := &RateLimit{Line: n.Line}
	rl.Unlimited = boolean(l, f["unlimited"], path+".unlimited")
	if v := f["unit"]; v != nil {
		if s, ok := str(l, v, path+".unit"); ok {
			u, known := ParseUnit(s)
			if !known {
				l.add(v.Line, path+".unit", "unknown unit %q (want second, minute, hour, day, week, month or year)", s)
			} else if rl.Unlimited {
				l.add(v.Line, path+".unit", "must not be set when unlimited is true")
			} else {
				rl.Unit = u
			}
		}
	} else if !rl.Unlimited {
		l.add(n.Line, path+".unit", "is required (second, minute, hour, day, week, month or year)")
	}
	if v := f["requests_per_unit"]; v != nil {
		if rl.Unlimited {
			l.add(v.Line, path+".requests_per_unit", "must not be set when unlimited is true")
		} else {
			rl.RequestsPerUnit = uint32Value(l, v, path+".requests_per_unit")
		}
	} else if !rl.Unlimited {
		l.add(n.Line, path+".requests_per_unit", "is required (0 denies every request)")
	}
	if v := f["name"]; v != nil {
		rl.Name, _ = str(l, v, path+".name")
	}
	if v := f["replaces"]; v != nil && !isNull(v) {
		if v.Kind != yaml.SequenceNode {
			l.add(v.Line, path+".replaces", "want a list of {name: ...}, got %s", kindName(v))
		} else {
			for i, item := range v.Content {
				item = resolve(item)
				p := fmt.Sprintf("%s.replaces[%d]", path, i)
				rf, ok := fields(l, item, p, "name")
				if !ok {
					continue
				}
				var name string
				if nv := rf["name"]; nv != nil {
					name, _ = str(l, nv, p+".name")
				}
				if name == "" {
					l.add(item.Line, p+".name", "must not be empty")
					continue
				}
				rl.Replaces = append(rl.Replaces, name)
			}
		}
	}
	return rl
}

// decodeMetadata decodes a descriptor's metadata: a mapping of any YAML
// values (the reference accepts anything its protobuf Struct can hold).
func decodeMetadata(l *errList, n *yaml.Node, path string) map[string]any {
	if n.Kind != yaml.MappingNode {
		l.add(n.Line, path, "want a mapping, got %s", kindName(n))
		return nil
	}
	m, _ := metadataValue(l, n, path, 0).(map[string]any)
	return m
}

// maxMetadataDepth bounds the nesting of metadata values.
const maxMetadataDepth = 64

// metadataValue converts n to the Go value structpb accepts: nil, bool,
// float64, string, []any or map[string]any. Scalars other than null,
// booleans and numbers are strings, as YAML wrote them.
func metadataValue(l *errList, n *yaml.Node, path string, depth int) any {
	n = resolve(n)
	if depth > maxMetadataDepth {
		l.add(n.Line, path, "nested more than %d levels deep", maxMetadataDepth)
		return nil
	}
	if !l.spend(n.Line, path) {
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := resolve(n.Content[i])
			if k.Kind != yaml.ScalarNode || isNull(k) {
				l.add(k.Line, path, "keys must be strings, got %s", kindName(k))
				continue
			}
			if _, dup := m[k.Value]; dup {
				l.add(k.Line, path+"."+k.Value, "duplicate field")
				continue
			}
			m[k.Value] = metadataValue(l, n.Content[i+1], path+"."+k.Value, depth+1)
		}
		return m
	case yaml.SequenceNode:
		list := make([]any, len(n.Content))
		for i, item := range n.Content {
			list[i] = metadataValue(l, item, fmt.Sprintf("%s[%d]", path, i), depth+1)
		}
		return list
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return nil
		case "!!bool":
			var b bool
			if n.Decode(&b) == nil {
				return b
			}
		case "!!int", "!!float":
			var f float64
			if n.Decode(&f) == nil {
				return f
			}
		}
		return n.Value
	default:
		l.add(n.Line, path, "want a metadata value, got %s", kindName(n))
		return nil
	}
}

// fields checks that n is a mapping with only the known keys, each once,
// and returns the values by key.
func fields(l *errList, n *yaml.Node, path string, known ...string) (map[string]*yaml.Node, bool) {
	if n.Kind != yaml.MappingNode {
		l.add(n.Line, path, "want a mapping, got %s", kindName(n))
		return nil, false
	}
	out := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		name := k.Value
		switch {
		case k.Kind != yaml.ScalarNode:
			l.add(k.Line, path, "field names must be strings, got %s", kindName(k))
		case !contains(known, name):
			l.add(k.Line, path+"."+name, "unknown field (want one of %s)", strings.Join(known, ", "))
		case out[name] != nil:
			l.add(k.Line, path+"."+name, "duplicate field")
		default:
			out[name] = v
		}
	}
	return out, true
}

func str(l *errList, n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		l.add(n.Line, path, "want a string, got %s", kindName(n))
		return "", false
	}
	return n.Value, true
}

// requiredStr decodes the string field name of f, the fields of the mapping
// at line and path; a missing one is reported as required, and gives "".
func requiredStr(l *errList, f map[string]*yaml.Node, line int, path, name string) string {
	if v := f[name]; v != nil {
		s, _ := str(l, v, path+"."+name)
		return s
	}
	l.add(line, path+"."+name, "is required")
	return ""
}

func boolean(l *errList, n *yaml.Node, path string) bool {
	if n == nil {
		return false
	}
	var b bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
		l.add(n.Line, path, "want true or false, got %s", kindName(n))
		return false
	}
	return b
}

func uint32Value(l *errList, n *yaml.Node, path string) uint32 {
	var v int64
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&v) != nil {
		l.add(n.Line, path, "want a whole number, got %s", kindName(n))
		return 0
	}
	if v < 0 || v > math.MaxUint32 {
		l.add(n.Line, path, "must be between 0 and %d, got %d", uint32(math.MaxUint32), v)
		return 0
	}
	return uint32(v)
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n == nil {
		return &yaml.Node{}
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	case 0:
		return "nothing"
	default:
		return "an unexpected node"
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
