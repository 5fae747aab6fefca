package cache_test

import (
	"strings"
	"testing"
	"time"

	"github.com/topdeck/resilience/cache"
)

func newNear(t *testing.T, opts ...cache.NearOption) *cache.Near {
	t.Helper()
	n, err := cache.NewNear(opts...)
	if err != nil {
		t.Fatal(err)
	}
	n.SetLive(true)
	return n
}

// fill reads key "from the store" at now: Begin then Commit of value.
func fill(t *testing.T, n *cache.Near, key, value string, ttl time.Duration, now time.Time) bool {
	t.Helper()
	return n.Commit(n.Begin(key, now), cache.Entry{Value: []byte(value), TTL: ttl})
}

func wantNear(t *testing.T, n *cache.Near, key string, now time.Time, want string) {
	t.Helper()
	e, ok := n.Get(key, now)
	switch {
	case want == "" && ok:
		t.Errorf("Get(%q): got %q, want a miss", key, e.Value)
	case want != "" && !ok:
		t.Errorf("Get(%q): got a miss, want %q", key, want)
	case want != "" && string(e.Value) != want:
		t.Errorf("Get(%q): got %q, want %q", key, e.Value, want)
	}
}

func TestNearAnswersOnlyWhileLive(t *testing.T) {
	n, err := cache.NewNear()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	if f := n.Begin("k", t0); f != nil {
		t.Fatalf("Begin on a Near not live: got a Fill, want nil")
	}
	if n.Commit(nil, cache.Entry{Value: []byte("v")}) {
		t.Fatalf("Commit(nil): got kept, want nothing kept")
	}
	n.SetLive(true)
	if !fill(t, n, "k", "v", time.Minute, t0) {
		t.Fatalf("fill while live: got not kept")
	}
	wantNear(t, n, "k", t0, "v")
	n.SetLive(false) // the feed broke
	wantNear(t, n, "k", t0, "")
	n.SetLive(true) // back: it starts empty
	wantNear(t, n, "k", t0, "")
}

func TestNearTTLCountsFromTheReadsStart(t *testing.T) {
	n := newNear(t)
	t0 := time.Unix(1000, 0)
	f := n.Begin("k", t0)
	// The reply comes 30ms later and says 100ms left: the copy must not
	// outlive t0+100ms, whatever the delay.
	if !n.Commit(f, cache.Entry{Value: []byte("v"), TTL: 100 * time.Millisecond}) {
		t.Fatal("not kept")
	}
	if e, ok := n.Get("k", t0.Add(30*time.Millisecond)); !ok || e.TTL != 70*time.Millisecond {
		t.Errorf("Get at +30ms: got %v, %v, want a hit with 70ms left", e.TTL, ok)
	}
	wantNear(t, n, "k", t0.Add(100*time.Millisecond-time.Nanosecond), "v")
	wantNear(t, n, "k", t0.Add(100*time.Millisecond), "")
	if n.Len() != 0 {
		t.Errorf("Len after the expired entry was read: got %d, want 0", n.Len())
	}

	// No TTL: kept until invalidated, or WithNearMaxAge.
	n = newNear(t, cache.WithNearMaxAge(time.Second))
	fill(t, n, "forever", "v", 0, t0)
	wantNear(t, n, "forever", t0.Add(999*time.Millisecond), "v")
	wantNear(t, n, "forever", t0.Add(time.Second), "")
	fill(t, n, "long", "v", time.Hour, t0)
	wantNear(t, n, "long", t0.Add(time.Second), "")
}

func TestNearInvalidationDuringARead(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tt := range []struct {
		name string
		inv  cache.Invalidation
	}{
		{"set", cache.Invalidation{Kind: cache.InvalidateSet, Keys: []string{"k"}}},
		{"delete", cache.Invalidation{Kind: cache.InvalidateDelete, Keys: []string{"a", "k"}}},
		{"pattern", cache.Invalidation{Kind: cache.InvalidatePattern, Pattern: "[jk]"}},
		{"all", cache.Invalidation{Kind: cache.InvalidateAll}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := newNear(t)
			f := n.Begin("k", t0) // the read of the old value is in flight...
			other := n.Begin("o", t0)
			n.Invalidate(tt.inv) // ...when a write's invalidation arrives
			if n.Commit(f, cache.Entry{Value: []byte("old"), TTL: time.Minute}) {
				t.Errorf("Commit after an invalidation of its key: got kept, want dropped")
			}
			wantNear(t, n, "k", t0, "")
			keptOther := n.Commit(other, cache.Entry{Value: []byte("o"), TTL: time.Minute})
			if want := tt.inv.Kind != cache.InvalidateAll; keptOther != want {
				t.Errorf("Commit of another key: got kept %v, want %v", keptOther, want)
			}
			// A read that begins after the invalidation is kept.
			if !fill(t, n, "k", "new", time.Minute, t0) {
				t.Errorf("fill after the invalidation: got dropped")
			}
			wantNear(t, n, "k", t0, "new")
		})
	}
}

func TestNearGapVoidsReadsInFlight(t *testing.T) {
	n := newNear(t)
	t0 := time.Unix(1000, 0)
	f := n.Begin("k", t0)
	n.SetLive(false)
	n.SetLive(true)
	if n.Commit(f, cache.Entry{Value: []byte("v"), TTL: time.Minute}) {
		t.Errorf("Commit of a read begun before a gap: got kept, want dropped")
	}
	n.Abandon(nil) // accepted
	n.Abandon(n.Begin("k", t0))
	wantNear(t, n, "k", t0, "")
}

func TestNearInvalidate(t *testing.T) {
	n := newNear(t)
	t0 := time.Unix(1000, 0)
	for _, k := range []string{"projects/1", "projects/2", "projects/10", "builds/1"} {
		fill(t, n, k, k, time.Minute, t0)
	}
	n.Invalidate(cache.Invalidation{Kind: cache.InvalidatePattern, Pattern: "projects/?"})
	wantNear(t, n, "projects/1", t0, "")
	wantNear(t, n, "projects/2", t0, "")
	wantNear(t, n, "projects/10", t0, "projects/10")
	n.Invalidate(cache.Invalidation{Kind: cache.InvalidateDelete, Keys: []string{"builds/1", "absent"}})
	wantNear(t, n, "builds/1", t0, "")
	wantNear(t, n, "projects/10", t0, "projects/10")
	n.Invalidate(cache.Invalidation{Kind: cache.InvalidateAll})
	if n.Len() != 0 || n.Bytes() != 0 || !n.Live() {
		t.Errorf("after InvalidateAll: got %d entries, %d bytes, live %v; want empty and live", n.Len(), n.Bytes(), n.Live())
	}
}

func TestNearBounds(t *testing.T) {
	t0 := time.Unix(1000, 0)
	n := newNear(t, cache.WithNearMaxEntries(3))
	for _, k := range []string{"a", "b", "c"} {
		fill(t, n, k, "v", time.Minute, t0)
	}
	wantNear(t, n, "a", t0, "v") // a is now the most recently used
	fill(t, n, "d", "v", time.Minute, t0)
	if n.Len() != 3 {
		t.Errorf("Len: got %d, want 3", n.Len())
	}
	wantNear(t, n, "b", t0, "") // the least recently used went
	wantNear(t, n, "a", t0, "v")

	// Bytes: each entry is charged key + value + a fixed overhead.
	big := strings.Repeat("x", 1000)
	n = newNear(t, cache.WithNearMaxBytes(2500))
	fill(t, n, "1", big, time.Minute, t0)
	fill(t, n, "2", big, time.Minute, t0)
	if n.Bytes() > 2500 || n.Len() != 2 {
		t.Fatalf("two 1000-byte values: got %d entries, %d bytes", n.Len(), n.Bytes())
	}
	fill(t, n, "3", big, time.Minute, t0)
	if n.Bytes() > 2500 || n.Len() != 2 {
		t.Errorf("third value: got %d entries, %d bytes, want 2 entries within 2500", n.Len(), n.Bytes())
	}
	wantNear(t, n, "1", t0, "")
	if fill(t, n, "huge", strings.Repeat("x", 3000), time.Minute, t0) {
		t.Errorf("an entry above the whole byte bound: got kept")
	}
}

func TestNewNearRefusesBadBounds(t *testing.T) {
	for _, opt := range []cache.NearOption{cache.WithNearMaxEntries(0), cache.WithNearMaxBytes(-1), cache.WithNearMaxAge(-time.Second)} {
		if _, err := cache.NewNear(opt); err == nil {
			t.Errorf("NewNear with a bad bound: got nil error")
		}
	}
}

func TestInvalidationCovers(t *testing.T) {
	for _, tt := range []struct {
		inv  cache.Invalidation
		key  string
		want bool
	}{
		{cache.Invalidation{Kind: cache.InvalidateSet, Keys: []string{"a"}}, "a", true},
		{cache.Invalidation{Kind: cache.InvalidateSet, Keys: []string{"a"}}, "b", false},
		{cache.Invalidation{Kind: cache.InvalidatePattern, Pattern: "a*"}, "ab", true},
		{cache.Invalidation{Kind: cache.InvalidatePattern, Pattern: "a*"}, "ba", false},
		{cache.Invalidation{Kind: cache.InvalidateAll}, "x", true},
	} {
		if got := tt.inv.Covers(tt.key); got != tt.want {
			t.Errorf("%+v.Covers(%q): got %v, want %v", tt.inv, tt.key, got, tt.want)
		}
	}
}
