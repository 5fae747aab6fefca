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
	case n.Kind != yaml.SequenceNode:
		l.add(n.Line, rootField, "want a list of domain documents (- domain: ...), got %s", kindName(n))
		return nil, l.err()
	}
	for i, item := range n.Content {
		if d, ok := decodeDomain(&l, resolve(item), fmt.Sprintf("%s[%d]", rootField, i)); ok {
			c.Domains = append(c.Domains, d)
		}
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

func decodeDomain(l *errList, n *yaml.Node, path string) (Domain, bool) {
	f, ok := fields(l, n, path, "domain", "descriptors")
	if !ok {
		return Domain{}, false
	}
	d := Domain{Line: n.Line}
	if v := f["domain"]; v != nil {
		d.Name, _ = str(l, v, path+".domain")
	} else {
		l.add(n.Line, path+".domain", "is required")
	}
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
		item = resolve(item)
		p := fmt.Sprintf("%s[%d]", path, i)
		f, ok := fields(l, item, p, "key", "value", "rate_limit", "descriptors", "shadow_mode",
			"share_threshold", "detailed_metric", "value_to_metric")
		if !ok {
			continue
		}
		d := Descriptor{Line: item.Line}
		if v := f["key"]; v != nil {
			d.Key, _ = str(l, v, p+".key")
		} else {
			l.add(item.Line, p+".key", "is required")
		}
		if v := f["value"]; v != nil {
			d.Value, _ = str(l, v, p+".value")
		}
		if v := f["rate_limit"]; v != nil {
			d.RateLimit = decodeRateLimit(l, v, p+".rate_limit")
		}
		if v := f["descriptors"]; v != nil {
			d.Descriptors = decodeDescriptors(l, v, p+".descriptors")
		}
		d.ShadowMode = boolean(l, f["shadow_mode"], p+".shadow_mode")
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
