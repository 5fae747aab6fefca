package cache_test

import (
	"errors"
	"testing"

	"github.com/topdeck/resilience/cache"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, key string
		want         bool
	}{
		{"*", "anything/with/slashes", true},
		{"*", "", true},
		{"", "", true},
		{"", "a", false},
		{"a*", "a", true},
		{"a*b", "a/x/b", true},
		{"a*b", "a/x/bc", false},
		{"a**b", "ab", true},
		{"*a*a*", "banana", true},
		{"*x*", "banana", false},
		{"?", "a", true},
		{"?", "", false},
		{"?", "ab", false},
		{"h?llo", "hello", true},
		{"h[ae]llo", "hallo", true},
		{"h[ae]llo", "hillo", false},
		{"h[^e]llo", "hallo", true},
		{"h[^e]llo", "hello", false},
		{"h[a-b]llo", "hbllo", true},
		{"h[b-a]llo", "hbllo", true},
		{"h[a-b]llo", "hcllo", false},
		{`h\*llo`, "h*llo", true},
		{`h\*llo`, "hallo", false},
		{`h\?`, "h?", true},
		{`h\?`, "hx", false},
		{`\[x\]`, "[x]", true},
		{`[\]]`, "]", true},
		{`[\-]`, "-", true},
		{`[]`, "a", false},
		{`[^]`, "a", true},
		{`[ab`, "a", true}, // an open class runs to the end of the pattern
		{`[ab`, "ab", false},
		{`a\`, `a\`, true},   // a trailing backslash is literal
		{`[a-]`, "-", false}, // "a-]" is a range from ']' to 'a'; the class is open
		{`[a-]`, "^", true},
		{"[x-z]*", "y/z", true},
		{"\xff", "\xff", true},
	} {
		if got := cache.Match(tc.pattern, tc.key); got != tc.want {
			t.Errorf("Match(%q, %q): got %v, want %v", tc.pattern, tc.key, got, tc.want)
		}
	}
}

func TestValidatePattern(t *testing.T) {
	tests := []struct {
		pattern string
		ok      bool
	}{
		{"*", true},
		{"user:*", true},
		{"[abc]*", true},
		{"[^a-z]?", true},
		{`\[`, true},
		{`a\\`, true},
		{`[\]]`, true},
		{"[", false},
		{"abc[de", false},
		{"[^", false},
		{`a\`, false},
		{`[\]`, false},
	}
	for _, tt := range tests {
		err := cache.ValidatePattern(tt.pattern)
		if (err == nil) != tt.ok {
			t.Errorf("cache.ValidatePattern(%q) = %v, want ok=%v", tt.pattern, err, tt.ok)
		}
		var ae *cache.ArgumentError
		if err != nil && (!errors.As(err, &ae) || ae.Field != "pattern") {
			t.Errorf("cache.ValidatePattern(%q) = %#v, want an *cache.ArgumentError for field pattern", tt.pattern, err)
		}
	}
}

// FuzzValidatePattern checks that a pattern ValidatePattern accepts is
// matched without panicking, and that every class in it is closed (Match
// never runs off its end).
func FuzzValidatePattern(f *testing.F) {
	for _, s := range []string{"*", "[", "a[b-c]*", `\`, `[\]`, "[^]", "?*?"} {
		f.Add(s, "abc")
	}
	f.Fuzz(func(t *testing.T, pattern, key string) {
		_ = cache.ValidatePattern(pattern)
		_ = cache.Match(pattern, key)
	})
}
