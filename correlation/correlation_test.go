package correlation

import (
	"context"
	"strings"
	"testing"
)

func TestContextRoundTrip(t *testing.T) {
	ctx := context.Background()
	if got := FromContext(ctx); got != "" {
		t.Errorf("FromContext(empty): got %q, want \"\"", got)
	}
	ctx = NewContext(ctx, "abc-123")
	if got, want := FromContext(ctx), "abc-123"; got != want {
		t.Errorf("FromContext: got %q, want %q", got, want)
	}
}

func TestNewIsValidAndUnique(t *testing.T) {
	a, b := New(), New()
	if !Valid(a) || len(a) != 32 {
		t.Errorf("New() = %q: want 32 valid hex digits", a)
	}
	if a == b {
		t.Errorf("New() twice gave %q both times", a)
	}
}

func TestValid(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"req-42", true},
		{"", false},
		{"has space", false},
		{"line\nbreak", false},
		{"caf\u00e9", false},
		{strings.Repeat("a", MaxLen), true},
		{strings.Repeat("a", MaxLen+1), false},
	}
	for _, tt := range tests {
		if got := Valid(tt.id); got != tt.want {
			t.Errorf("Valid(%q): got %v, want %v", tt.id, got, tt.want)
		}
	}
}
