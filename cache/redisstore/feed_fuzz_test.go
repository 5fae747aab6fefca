package redisstore

import (
	"slices"
	"strings"
	"testing"

	"github.com/topdeck/resilience/cache"
)

// FuzzInvalidationMessage: any message decodes without a panic, and keys
// of any bytes round-trip through encodeInvalidation.
func FuzzInvalidationMessage(f *testing.F) {
	f.Add("s\x01k", "a\x00b")
	f.Add("d\x01a\x00", "")
	f.Add("p*", "x")
	f.Add("d\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "\xff")
	f.Add("", "k")
	f.Fuzz(func(t *testing.T, msg, joined string) {
		inv := decodeInvalidation(msg)
		if inv.Kind < cache.InvalidateAll || inv.Kind > cache.InvalidatePattern {
			t.Fatalf("decode %q: kind %v", msg, inv.Kind)
		}
		keys := strings.Split(joined, "\x00")
		for _, kind := range []cache.InvalidationKind{cache.InvalidateSet, cache.InvalidateDelete} {
			want := cache.Invalidation{Kind: kind, Keys: keys}
			got := decodeInvalidation(encodeInvalidation(want))
			if got.Kind != kind || !slices.Equal(got.Keys, keys) {
				t.Fatalf("round trip of %q: got %+v, want %+v", keys, got, want)
			}
		}
		p := cache.Invalidation{Kind: cache.InvalidatePattern, Pattern: joined}
		if got := decodeInvalidation(encodeInvalidation(p)); got.Kind != p.Kind || got.Pattern != joined {
			t.Fatalf("round trip of pattern %q: got %+v", joined, got)
		}
	})
}
