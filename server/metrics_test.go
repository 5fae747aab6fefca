package server

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/config"
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

// prunerStore is a breaker store with a registry whose Prune removes 3 names
// each time it runs.
type prunerStore struct {
	breaker.Store
	calls chan time.Duration
}

func (p *prunerStore) Prune(_ context.Context, every time.Duration) (int, bool, error) {
	select {
	case p.calls <- every:
	default:
	}
	return 3, true, nil
}

func TestBackendsPruneTheBreakerRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	st := memoryStores(t, config.Default(), nil)
	p := &prunerStore{Store: st.Breaker, calls: make(chan time.Duration, 1)}
	st.Breaker = p
	b, err := NewBackends(config.Default(), st, slog.New(slog.DiscardHandler), WithBackendMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	b.pruneEvery = 40 * time.Millisecond

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.pruneRegistry(ctx)
	}()
	for i := 0; i < 2; i++ {
		select {
		case every := <-p.calls:
			if every != b.pruneEvery {
				t.Errorf("Prune period: got %v, want %v (the store's lock period)", every, b.pruneEvery)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Prune was called %d times in 5s, want it called every ~10ms", i)
		}
	}
	cancel()
	<-done
	var got float64 = -1
	for _, l := range strings.Split(gatherText(t, reg), "\n") {
		if v, ok := strings.CutPrefix(l, "resilience_breaker_registry_pruned_total "); ok {
			got, _ = strconv.ParseFloat(v, 64)
		}
	}
	if got < 6 {
		t.Errorf("resilience_breaker_registry_pruned_total: got %v, want at least 6 (3 per prune)", got)
	}
}
