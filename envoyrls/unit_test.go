package envoyrls_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/topdeck/resilience/envoyrls"
)

// TestUnitsAreEnvoys checks that every Unit has the value of Envoy's unit of
// the same name (responses carry it as is), its length, and that names
// parse back, in any case; values outside the list are not units.
func TestUnitsAreEnvoys(t *testing.T) {
	lengths := map[envoyrls.Unit]time.Duration{
		envoyrls.UnitSecond: time.Second, envoyrls.UnitMinute: time.Minute, envoyrls.UnitHour: time.Hour,
		envoyrls.UnitDay: 24 * time.Hour, envoyrls.UnitWeek: 7 * 24 * time.Hour,
		envoyrls.UnitMonth: 30 * 24 * time.Hour, envoyrls.UnitYear: 365 * 24 * time.Hour,
	}
	for u, d := range lengths {
		if got, want := ratelimitv3.RateLimitResponse_RateLimit_Unit_name[int32(u)], strings.ToUpper(u.String()); got != want {
			t.Errorf("%v = %d is Envoy's %s, want %s", u, int(u), got, want)
		}
		if !u.Valid() || u.Duration() != d {
			t.Errorf("%v: Valid %v, Duration %v; want true, %v", u, u.Valid(), u.Duration(), d)
		}
		for _, name := range []string{u.String(), strings.ToUpper(u.String())} {
			if got, ok := envoyrls.ParseUnit(name); !ok || got != u {
				t.Errorf("ParseUnit(%q) = %v, %v; want %v", name, got, ok, u)
			}
		}
	}
	if n := len(ratelimitv3.RateLimitResponse_RateLimit_Unit_name) - 1; n != len(lengths) {
		t.Errorf("Envoy has %d units besides UNKNOWN, this package %d", n, len(lengths))
	}
	for _, u := range []envoyrls.Unit{0, 8, -1} {
		if u.Valid() || u.Duration() != 0 || u.String() != fmt.Sprintf("Unit(%d)", int(u)) {
			t.Errorf("Unit(%d): Valid %v, Duration %v, String %q; want false, 0, Unit(%d)", int(u), u.Valid(), u.Duration(), u.String(), int(u))
		}
	}
	for _, name := range []string{"", "unknown", "seconds", "fortnight"} {
		if u, ok := envoyrls.ParseUnit(name); ok {
			t.Errorf("ParseUnit(%q) = %v, want not a unit", name, u)
		}
	}
}
