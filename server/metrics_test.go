package server

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// gatherText renders reg in the Prometheus text format.
func gatherText(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.String()
}

// missingSeries returns the "name{label}" pairs of want not found on one line
// of the exposition (a name with nil labels only has to be there).
func missingSeries(t *testing.T, reg *prometheus.Registry, want map[string][]string) []string {
	t.Helper()
	lines := strings.Split(gatherText(t, reg), "\n")
	var missing []string
	for name, labels := range want {
		found := false
		for _, l := range lines {
			if strings.HasPrefix(l, name+"{") || strings.HasPrefix(l, name+" ") {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, name)
			continue
		}
		for _, lab := range labels {
			ok := false
			for _, l := range lines {
				if strings.HasPrefix(l, name+"{") && strings.Contains(l, lab) {
					ok = true
					break
				}
			}
			if !ok {
				missing = append(missing, name+"{"+lab+"}")
			}
		}
	}
	return missing
}

// eventually polls cond until it holds or d has passed.
func eventually(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}
