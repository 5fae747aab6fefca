package breaker_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/topdeck/resilience/breaker"
)

// ParsePermitID and ValidatePermitID never panic; a permit that parses is
// exactly what PermitID formats, and passes ValidatePermitID, as does its
// local form.
func FuzzParsePermitID(f *testing.F) {
	for _, s := range []string{
		"1.1", "1930367167123457.3", "18446744073709551615.18446744073709551615", "18446744073709551616.1",
		"", ".", "1.", ".1", "0.1", "01.1", "-1.1", "+1.1", "1.1.1", "1e3.1", " 1.1", "1.1 ",
		"local:", "local:abc", "local:" + strings.Repeat("0a", 16) + ":7.1", "local:" + strings.Repeat("0A", 16) + ":7.1",
		"\x00", "１.１",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		gen, seq, ok := breaker.ParsePermitID(p)
		verr := breaker.ValidatePermitID(p)
		if !ok {
			if gen != 0 || seq != 0 {
				t.Fatalf("ParsePermitID(%q): not ok but got %d.%d", p, gen, seq)
			}
			return
		}
		if got := breaker.PermitID(gen, seq); got != p {
			t.Fatalf("ParsePermitID(%q) = %d, %d: PermitID gives %q, want the input", p, gen, seq, got)
		}
		if gen == 0 || seq == 0 || len(p) > breaker.MaxPermitIDLen {
			t.Fatalf("ParsePermitID(%q): accepted %d.%d", p, gen, seq)
		}
		if verr != nil {
			t.Fatalf("ValidatePermitID(%q) of a well-formed permit: %v", p, verr)
		}
		if err := breaker.ValidatePermitID("local:" + strings.Repeat("f", 32) + ":" + p); err != nil {
			t.Fatalf("ValidatePermitID of the local form of %q: %v", p, err)
		}
	})
}

// Page tokens round-trip, and a malformed one is an *InvalidArgumentError.
func FuzzPageToken(f *testing.F) {
	for _, s := range []string{"", "api/a1", "a}b", "ünï", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if len(name) > 256 {
			return
		}
		got, err := breaker.DecodePageToken(breaker.EncodePageToken(name))
		if err != nil || got != name {
			t.Fatalf("DecodePageToken(EncodePageToken(%q)): got %q, %v", name, got, err)
		}
		if _, err := breaker.DecodePageToken(name); err != nil {
			var ia *breaker.InvalidArgumentError
			if !errors.As(err, &ia) || ia.Field != breaker.FieldPageToken {
				t.Fatalf("DecodePageToken(%q): got %v, want an *InvalidArgumentError for page_token", name, err)
			}
		}
	})
}
