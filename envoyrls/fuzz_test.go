package envoyrls

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/topdeck/resilience/limiter"
)

// The seed corpora are in testdata/fuzz; plain `go test` runs them. To
// search further: go test -run '^$' -fuzz FuzzParse -fuzztime 30s ./envoyrls/

// Loading any YAML never panics; an error always matches ErrInvalidConfig;
// a loaded configuration is ready for matching.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Parse: got %v, want an error matching ErrInvalidConfig", err)
			}
			return
		}
		if c.compiled == nil {
			t.Fatal("Parse succeeded without compiling the configuration")
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Validate after a successful Parse: %v", err)
		}
		for _, d := range c.Domains {
			for _, ds := range d.Descriptors {
				c.compiled.lookup(d.Name, entries(ds.Key, ds.Value))
				c.compiled.lookup(d.Name, entries(ds.Key, strings.ReplaceAll(ds.Value, "*", "x"), ds.Key, ""))
			}
		}
	})
}

// A wildcard matches exactly what the equivalent regular expression does.
func FuzzPatternMatch(f *testing.F) {
	f.Fuzz(func(t *testing.T, value, pat string) {
		if !strings.Contains(pat, "*") {
			pat += "*"
		}
		if !utf8.ValidString(pat) || !utf8.ValidString(value) || len(pat) > 64 {
			return // regexp needs UTF-8; the matcher itself does not
		}
		p := compilePattern(pat)
		quoted := make([]string, len(p))
		for i, part := range p {
			quoted[i] = regexp.QuoteMeta(part)
		}
		re := regexp.MustCompile(`(?s)^` + strings.Join(quoted, `.*`) + `$`)
		if got, want := p.match(value), re.MatchString(value); got != want {
			t.Fatalf("%q matches %q: got %v, want %v", pat, value, got, want)
		}
	})
}

const fuzzConfig = `
- domain: d
  descriptors:
    - key: a
      rate_limit: {unit: second, requests_per_unit: 3}
      descriptors:
        - key: b
          value: "x*y*z"
          share_threshold: true
          quota_mode: true
          metadata: {m: 1}
          rate_limit: {unit: minute, requests_per_unit: 2, name: inner}
        - key: b
          rate_limit: {unlimited: true}
    - key: a
      value: "*"
      shadow_mode: true
      rate_limit: {unit: hour, requests_per_unit: 1, replaces: [{name: inner}]}
    - key: c
      value: "p*"
      rate_limit: {unit: day, requests_per_unit: 0}
`

// Any request descriptor is matched and decided without a panic: the
// answer is INVALID_ARGUMENT, or one status per descriptor.
func FuzzShouldRateLimit(f *testing.F) {
	c, err := Parse([]byte("response_headers: {enabled: true}\nresponse_dynamic_metadata: true\nquota_mode: false\ndomains:" +
		strings.ReplaceAll(fuzzConfig, "\n", "\n  ")))
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	srv, err := New(limiter.New(limiter.NewMemoryStore(limiter.WithMemoryClock(clock)), limiter.WithClock(clock)), c)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string, hits uint32, descHits int64, rpu uint32, unit int32, twice bool) {
		d := &commonv3.RateLimitDescriptor{Entries: entries(k1, v1)}
		if k2 != "" || v2 != "" {
			d.Entries = append(d.Entries, entries(k2, v2)...)
		}
		if descHits >= 0 {
			d.HitsAddend = wrapperspb.UInt64(uint64(descHits))
		}
		if unit != 0 {
			d.Limit = &commonv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: rpu, Unit: typev3.RateLimitUnit(unit)}
		}
		req := &ratelimitv3.RateLimitRequest{Domain: "d", HitsAddend: hits, Descriptors: []*commonv3.RateLimitDescriptor{d}}
		if twice {
			req.Descriptors = append(req.Descriptors, d)
		}
		resp, err := srv.ShouldRateLimit(context.Background(), req)
		if err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("got %v, want INVALID_ARGUMENT or an answer", err)
			}
			return
		}
		if len(resp.GetStatuses()) != len(req.Descriptors) {
			t.Fatalf("got %d statuses for %d descriptors", len(resp.GetStatuses()), len(req.Descriptors))
		}
		if hs := resp.GetResponseHeadersToAdd(); hs != nil && len(hs) != 3 {
			t.Fatalf("got headers %v, want none or three", hs)
		}
		if resp.GetDynamicMetadata().GetFields()["domain"].GetStringValue() != "d" {
			t.Fatalf("got dynamic_metadata %v, want the domain in it", resp.GetDynamicMetadata())
		}
		for _, e := range d.GetEntries() {
			if e.GetKey() == "" {
				return
			}
		}
		key := bucketKey("envoy", "d", d.GetEntries(), nil)
		if parts := strings.Split(key, ":"); len(parts) != 2+len(d.GetEntries()) || strings.ContainsAny(key, "{}") {
			t.Fatalf("bucket key %q: want %d ':'-separated parts and no braces", key, 2+len(d.GetEntries()))
		}
	})
}
