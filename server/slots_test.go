package server

import (
	"slices"
	"strings"
	"testing"

	"github.com/topdeck/resilience/limiter"
)

func TestSlotToken(t *testing.T) {
	id := limiter.NewSlotID()
	keys := []string{"ado", strings.Repeat("k", MaxKeyBytes), "with\x00nul"}
	for _, degraded := range []bool{false, true} {
		tok := encodeSlotToken(id, keys, degraded)
		gotID, gotKeys, gotDeg, err := decodeSlotToken(tok)
		if err != nil || gotID != id || !slices.Equal(gotKeys, keys) || gotDeg != degraded {
			t.Errorf("round trip of %q: %q %q %v %v", tok, gotID, gotKeys, gotDeg, err)
		}
		if len(tok) > maxSlotTokenBytes {
			t.Errorf("token of %d bytes, more than %d", len(tok), maxSlotTokenBytes)
		}
	}
	for _, bad := range []string{"", "s1.", "s2." + encodeSlotToken(id, keys, false)[3:], "s1.!!!", encodeSlotToken(id, keys, false) + "A", "s1.AAAA", strings.Repeat("s", maxSlotTokenBytes+1)} {
		if _, _, _, err := decodeSlotToken(bad); err == nil {
			t.Errorf("decodeSlotToken(%q) accepted", bad)
		}
	}
}

func FuzzSlotToken(f *testing.F) {
	f.Add(encodeSlotToken(limiter.NewSlotID(), []string{"a", "b"}, false))
	f.Add("s1.")
	f.Fuzz(func(t *testing.T, tok string) {
		id, keys, _, err := decodeSlotToken(tok)
		if err != nil {
			return
		}
		if !limiter.ValidSlotID(id) || len(keys) == 0 || len(keys) > limiter.MaxLimitsPerCall {
			t.Fatalf("decodeSlotToken(%q) = %q, %q", tok, id, keys)
		}
		for _, k := range keys {
			if k == "" || len(k) > MaxKeyBytes {
				t.Fatalf("decodeSlotToken(%q): key %q", tok, k)
			}
		}
	})
}
