package enum

import "testing"

type small uint8

type signed int

func TestName(t *testing.T) {
	names := []string{1: "one", 2: "two"}
	for _, tt := range []struct {
		got, want string
	}{
		{Name("small", small(1), names), "one"},
		{Name("small", small(2), names), "two"},
		{Name("small", small(0), names), "small(0)"}, // an empty entry has no name
		{Name("small", small(3), names), "small(3)"},
		{Name("small", small(255), names), "small(255)"},
		{Name("signed", signed(2), names), "two"},
		{Name("signed", signed(-1), names), "signed(-1)"},
		{Name("signed", signed(1<<30), names), "signed(1073741824)"},
		{Name("small", small(1), nil), "small(1)"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
