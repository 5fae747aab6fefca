package envoyrls

import (
	"strings"
	"time"

	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/topdeck/resilience/limiter"
)

// table is a validated Config ready for matching. It is immutable.
type table struct {
	domains         map[string]*level
	headers         *headerNames // nil: no rate limit headers
	dynamicMetadata bool
	shadow          bool // global shadow mode
	quota           bool // global quota mode
}

// level is one descriptor list.
type level struct {
	byValue   map[entry]*node       // descriptors with a value (wildcards included, as literals)
	byKey     map[string]*node      // descriptors without a value
	wildcards map[string][]wildcard // by key: descriptors whose value contains '*', in configuration order
}

type entry struct{ key, value string }

type wildcard struct {
	pattern pattern
	n       *node
}

// pattern is a wildcard value split at its '*'s: "foo*bar*baz" is
// ["foo", "bar", "baz"], "pre*" is ["pre", ""]. It always has two parts or
// more.
type pattern []string

func compilePattern(value string) pattern { return strings.Split(value, "*") }

// match reports whether value matches p, each '*' standing for zero or more
// characters. It does not allocate. The first part must start value and the
// last must end it; the parts between are found leftmost first, which finds
// a match whenever there is one.
func (p pattern) match(value string) bool {
	first, last := p[0], p[len(p)-1]
	if len(value) < len(first)+len(last) || !strings.HasPrefix(value, first) || !strings.HasSuffix(value, last) {
		return false
	}
	rest := value[len(first) : len(value)-len(last)]
	for _, part := range p[1 : len(p)-1] {
		i := strings.Index(rest, part)
		if i < 0 {
			return false
		}
		rest = rest[i+len(part):]
	}
	return true
}

// node is one descriptor.
type node struct {
	rule     *rule  // nil: no rate_limit here
	share    string // share_threshold: the wildcard value that replaces matched values in the bucket key
	children *level // nil: no nested descriptors
}

// rule is a rate_limit block (or a request's limit override).
type rule struct {
	name      string
	replaces  []string
	shadow    bool
	quota     bool
	unlimited bool
	rpu       uint32
	unit      Unit
	mult      uint32 // unit multiplier of an override; 0 for configured limits
	window    time.Duration
	limit     limiter.Limit    // zero when unlimited or rpu == 0
	metadata  *structpb.Struct // the descriptor's metadata; nil for none
}

// lookup finds the rule for d in domain, following the reference service:
// per level, key and value first, then the first matching wildcard in
// configuration order, then the key alone; the rule applies only if it sits
// where the entries end. shared[i], when shared is not nil and shared[i] is
// not empty, is the wildcard that replaces entry i's value in the bucket
// key.
func (t *table) lookup(domain string, entries []*commonv3.RateLimitDescriptor_Entry) (r *rule, shared []string) {
	lv := t.domains[domain]
	for i, e := range entries {
		if lv == nil {
			return nil, nil
		}
		key, value := e.GetKey(), e.GetValue()
		var n *node
		viaWildcard := false
		if value != "" {
			n = lv.byValue[entry{key, value}]
		}
		if n == nil {
			for _, w := range lv.wildcards[key] {
				if w.pattern.match(value) {
					n, viaWildcard = w.n, true
					break
				}
			}
		}
		if n == nil {
			n = lv.byKey[key]
		}
		if n == nil {
			return nil, nil
		}
		if viaWildcard && n.share != "" {
			if shared == nil {
				shared = make([]string, len(entries))
			}
			shared[i] = n.share
		}
		if i == len(entries)-1 {
			return n.rule, shared
		}
		lv = n.children
	}
	return nil, nil
}

// keyEscaper escapes the separators of bucket keys (and Redis hash-tag
// braces) so that distinct descriptors never share a key.
var keyEscaper = strings.NewReplacer("%", "%25", ":", "%3A", "=", "%3D", "{", "%7B", "}", "%7D")

func appendEscaped(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '%', ':', '=', '{', '}':
			b.WriteString(keyEscaper.Replace(s))
			return
		}
	}
	b.WriteString(s)
}

// bucketKey is the limiter key of one request descriptor:
// <prefix>:<domain>:<key1>=<value1>:<key2>=<value2>...
func bucketKey(prefix, domain string, entries []*commonv3.RateLimitDescriptor_Entry, shared []string) string {
	var b strings.Builder
	n := len(prefix) + len(domain) + 2
	for _, e := range entries {
		n += len(e.GetKey()) + len(e.GetValue()) + 2
	}
	b.Grow(n)
	b.WriteString(prefix)
	b.WriteByte(':')
	appendEscaped(&b, domain)
	for i, e := range entries {
		b.WriteByte(':')
		appendEscaped(&b, e.GetKey())
		b.WriteByte('=')
		if shared != nil && shared[i] != "" {
			appendEscaped(&b, shared[i])
		} else {
			appendEscaped(&b, e.GetValue())
		}
	}
	return b.String()
}
