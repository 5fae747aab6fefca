package storetest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/topdeck/resilience/internal/clocktest"
	"github.com/topdeck/resilience/internal/testkit"

	"github.com/topdeck/resilience/cache"
)

// NewStoreFunc returns a new, empty store for one test: no entries and zero
// statistics, isolated from the stores of other tests (for Redis, a fresh
// prefix or server). A store with its own clock must read time from now; a
// store that uses server time (Redis) ignores now, and the suite then waits
// in real time, with short TTLs, for expiry.
type NewStoreFunc func(t *testing.T, now func() time.Time) cache.Store

// Run runs the conformance suite against the stores newStore returns. The
// stores must also implement cache.StatsStore.
func Run(t *testing.T, newStore NewStoreFunc) {
	t.Helper()
	testkit.Suite[*harness]{
		{"RoundTrip", testRoundTrip},
		{"TTL", testTTL},
		{"Expiry", testExpiry},
		{"Overwrite", testOverwrite},
		{"Delete", testDelete},
		{"DeletePattern", testDeletePattern},
		{"Len", testLen},
		{"Concurrent", testConcurrent},
		{"StatsIdempotent", testStatsIdempotent},
		{"CacheStatsAcrossInstances", testCacheStats},
		{"CacheRunFlushes", testCacheRun},
	}.Run(t, func(t *testing.T) *harness {
		h := &harness{t: t, clock: clocktest.New(time.Now())}
		h.store = newStore(t, h.clock.Now)
		return h
	})
}

// harness holds one test's store and its fake clock.
type harness struct {
	t     *testing.T
	store cache.Store
	clock *clocktest.Clock
}

// advance moves the fake clock forward by d. Stores on real time ignore it;
// callers then poll with eventually.
func (h *harness) advance(d time.Duration) { h.clock.Advance(d) }

func (h *harness) set(key string, value []byte, ttl time.Duration) {
	h.t.Helper()
	if err := h.store.Set(context.Background(), key, value, ttl); err != nil {
		h.t.Fatalf("Set(%q): %v", key, err)
	}
}

func (h *harness) get(key string) (cache.Entry, bool) {
	h.t.Helper()
	e, ok, err := h.store.Get(context.Background(), key)
	if err != nil {
		h.t.Fatalf("Get(%q): %v", key, err)
	}
	return e, ok
}

func (h *harness) length() int64 {
	h.t.Helper()
	n, err := h.store.Len(context.Background())
	if err != nil {
		h.t.Fatalf("Len: %v", err)
	}
	return n
}

// eventually polls cond every 10 ms until it holds, failing after 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still false after 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func binaryValue() []byte {
	v := make([]byte, 0, 512)
	for i := 0; i < 512; i++ {
		v = append(v, byte(i))
	}
	return append(v, 0xff, 0xfe, 0x00, '\r', '\n')
}

func testRoundTrip(t *testing.T, h *harness) {
	for _, tc := range []struct {
		name, key string
		value     []byte
	}{
		{"text", "greeting", []byte("hello")},
		{"binary", "bin", binaryValue()},
		{"empty value", "empty", []byte{}},
		{"key with glob bytes", "k*?[x]\\", []byte("glob")},
		{"key with slash and unicode", "a/b/é", []byte("path")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			h.set(tc.key, tc.value, time.Minute)
			e, ok := h.get(tc.key)
			if !ok {
				t.Fatalf("Get(%q): got not found, want found", tc.key)
			}
			if !bytes.Equal(e.Value, tc.value) {
				t.Errorf("Get(%q): got value %q, want %q", tc.key, e.Value, tc.value)
			}
		})
	}
	h.t = t
	if _, ok := h.get("missing"); ok {
		t.Errorf("Get(missing): got found, want not found")
	}
	// The returned slice belongs to the caller.
	e, _ := h.get("greeting")
	e.Value[0] = 'X'
	if e2, _ := h.get("greeting"); string(e2.Value) != "hello" {
		t.Errorf("after modifying a returned value: got %q, want %q", e2.Value, "hello")
	}
}

func testTTL(t *testing.T, h *harness) {
	h.set("minute", []byte("v"), time.Minute)
	e, ok := h.get("minute")
	if !ok {
		t.Fatalf("Get(minute): got not found, want found")
	}
	if e.TTL <= 50*time.Second || e.TTL > time.Minute {
		t.Errorf("Get(minute).TTL: got %v, want in (50s, 1m]", e.TTL)
	}
	h.set("forever", []byte("v"), 0)
	e, ok = h.get("forever")
	if !ok || e.TTL != 0 {
		t.Errorf("Get(forever): got found=%v TTL=%v, want found with TTL 0 (no expiry)", ok, e.TTL)
	}
}

func testExpiry(t *testing.T, h *harness) {
	const ttl = 100 * time.Millisecond
	h.set("short", []byte("v"), ttl)
	h.set("long", []byte("v"), time.Hour)
	h.advance(ttl)
	eventually(t, "Get(short) not found after its TTL", func() bool {
		_, ok := h.get("short")
		return !ok
	})
	if _, ok := h.get("long"); !ok {
		t.Errorf("Get(long): got not found, want found")
	}
	if got := h.length(); got != 1 {
		t.Errorf("Len after expiry: got %d, want 1", got)
	}
	n, err := h.store.Delete(context.Background(), "short")
	if err != nil || n != 0 {
		t.Errorf("Delete(expired): got %d, %v, want 0, nil", n, err)
	}
}

func testOverwrite(t *testing.T, h *harness) {
	h.set("k", []byte("one"), time.Minute)
	h.set("k", []byte("two"), 0)
	e, ok := h.get("k")
	if !ok || string(e.Value) != "two" || e.TTL != 0 {
		t.Errorf("Get(k) after overwrite: got found=%v value=%q TTL=%v, want two without expiry", ok, e.Value, e.TTL)
	}
	h.set("k", []byte("three"), time.Minute)
	if e, _ := h.get("k"); string(e.Value) != "three" || e.TTL <= 0 {
		t.Errorf("Get(k) after second overwrite: got value=%q TTL=%v, want three with a TTL", e.Value, e.TTL)
	}
	if got := h.length(); got != 1 {
		t.Errorf("Len: got %d, want 1", got)
	}
}

func testDelete(t *testing.T, h *harness) {
	for _, k := range []string{"a", "b", "c"} {
		h.set(k, []byte(k), time.Minute)
	}
	n, err := h.store.Delete(context.Background(), "a", "b", "missing", "a")
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if n != 2 {
		t.Errorf("Delete(a, b, missing, a): got %d, want 2", n)
	}
	for k, want := range map[string]bool{"a": false, "b": false, "c": true} {
		if _, ok := h.get(k); ok != want {
			t.Errorf("Get(%q) after Delete: got found=%v, want %v", k, ok, want)
		}
	}
	// Many keys: more than one UNLINK batch.
	keys := make([]string, 1200)
	for i := range keys {
		keys[i] = "many:" + itoa(i)
		h.set(keys[i], []byte("v"), time.Minute)
	}
	if n, err := h.store.Delete(context.Background(), keys...); err != nil || n != int64(len(keys)) {
		t.Errorf("Delete(1200 keys): got %d, %v, want 1200, nil", n, err)
	}
	if got := h.length(); got != 1 {
		t.Errorf("Len after deletes: got %d, want 1", got)
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

// patternKeys are written before each DeletePattern case.
var patternKeys = []string{
	"user:1", "user:2", "user:10", "user/1/profile", "USER:1",
	"item:a", "item:b", "item:c", "item:d",
	"star*key", "starXkey", "q?mark", "qXmark", "br[x]", "brx", `back\slash`, "backslash",
}

func testDeletePattern(t *testing.T, h *harness) {
	for _, tc := range []struct {
		pattern string
		want    []string // the keys removed
	}{
		{"*", patternKeys},
		{"user:*", []string{"user:1", "user:2", "user:10"}},
		{"user*", []string{"user:1", "user:2", "user:10", "user/1/profile"}},
		{"*/profile", []string{"user/1/profile"}},
		{"user:?", []string{"user:1", "user:2"}},
		{"user:??", []string{"user:10"}},
		{"item:[abc]", []string{"item:a", "item:b", "item:c"}},
		{"item:[^a]", []string{"item:b", "item:c", "item:d"}},
		{"item:[b-c]", []string{"item:b", "item:c"}},
		{"item:[c-b]", []string{"item:b", "item:c"}},
		{"user:[12]*", []string{"user:1", "user:2", "user:10"}},
		{`star\*key`, []string{"star*key"}},
		{`q\?mark`, []string{"q?mark"}},
		{`br\[x\]`, []string{"br[x]"}},
		{`br[x]`, []string{"brx"}},
		{`back\\slash`, []string{`back\slash`}},
		{"nothing*", nil},
		{"user:1", []string{"user:1"}},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			h.t = t
			for _, k := range patternKeys {
				h.set(k, []byte(k), time.Minute)
			}
			n, err := h.store.DeletePattern(context.Background(), tc.pattern)
			if err != nil {
				t.Fatalf("DeletePattern(%q): %v", tc.pattern, err)
			}
			if n != int64(len(tc.want)) {
				t.Errorf("DeletePattern(%q): got %d deleted, want %d", tc.pattern, n, len(tc.want))
			}
			var gone []string
			for _, k := range patternKeys {
				if _, ok := h.get(k); !ok {
					gone = append(gone, k)
				}
			}
			want := slices.Clone(tc.want)
			sort.Strings(want)
			sort.Strings(gone)
			if !slices.Equal(gone, want) {
				t.Errorf("DeletePattern(%q) removed %q, want %q", tc.pattern, gone, want)
			}
			for _, k := range want {
				if !cache.Match(tc.pattern, k) {
					t.Errorf("cache.Match(%q, %q) = false, but the store removed it", tc.pattern, k)
				}
			}
		})
	}
}

func testLen(t *testing.T, h *harness) {
	if got := h.length(); got != 0 {
		t.Errorf("Len of a new store: got %d, want 0", got)
	}
	for _, k := range []string{"a", "b", "c"} {
		h.set(k, []byte(k), time.Minute)
	}
	h.set("a", []byte("again"), time.Minute)
	if got := h.length(); got != 3 {
		t.Errorf("Len: got %d, want 3", got)
	}
	if _, err := h.store.Delete(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
	if got := h.length(); got != 2 {
		t.Errorf("Len after Delete: got %d, want 2", got)
	}
}

func testConcurrent(t *testing.T, h *harness) {
	ctx := context.Background()
	for _, err := range testkit.Parallel(8, func(int) error {
		for i := 0; i < 50; i++ {
			k := "c:" + itoa(i%5)
			if err := h.store.Set(ctx, k, []byte(k), time.Minute); err != nil {
				return err
			}
			e, ok, err := h.store.Get(ctx, k)
			if err != nil {
				return err
			}
			if ok && string(e.Value) != k {
				return errors.New("Get(" + k + ") returned " + string(e.Value))
			}
		}
		return nil
	}) {
		t.Error(err)
	}
}

func statsStore(t *testing.T, s cache.Store) cache.StatsStore {
	t.Helper()
	ss, ok := s.(cache.StatsStore)
	if !ok {
		t.Fatalf("store %T does not implement cache.StatsStore", s)
	}
	return ss
}

func testStatsIdempotent(t *testing.T, h *harness) {
	ctx := context.Background()
	ss := statsStore(t, h.store)
	d := cache.StatsDelta{Source: "a", Seq: 1, Counters: cache.Counters{Hits: 2, Misses: 1, Sets: 3, Deletes: 4, Errors: 5}}
	for i := 0; i < 2; i++ { // the second is a retried batch
		if err := ss.AddStats(ctx, d); err != nil {
			t.Fatalf("AddStats: %v", err)
		}
	}
	if err := ss.AddStats(ctx, cache.StatsDelta{Source: "b", Seq: 1, Counters: cache.Counters{Hits: 10}}); err != nil {
		t.Fatal(err)
	}
	if err := ss.AddStats(ctx, cache.StatsDelta{Source: "a", Seq: 2, Counters: cache.Counters{Hits: 100}}); err != nil {
		t.Fatal(err)
	}
	got, err := ss.LoadStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := cache.Counters{Hits: 112, Misses: 1, Sets: 3, Deletes: 4, Errors: 5}
	if got != want {
		t.Errorf("LoadStats: got %+v, want %+v", got, want)
	}
}

// NewCache returns a Cache over s with opts, failing t if cache.New refuses
// them.
func NewCache(t *testing.T, s cache.Store, opts ...cache.Option) *cache.Cache {
	t.Helper()
	c, err := cache.New(s, opts...)
	if err != nil {
		t.Fatalf("cache.New: %v", err)
	}
	return c
}

// WantCounters fails t unless the Stats of c have the counters want; what
// names the check in the message.
func WantCounters(t *testing.T, what string, c *cache.Cache, want cache.Counters) {
	t.Helper()
	st, err := c.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Counters != want {
		t.Errorf("%s: got %+v, want %+v", what, st.Counters, want)
	}
}

func testCacheStats(t *testing.T, h *harness) {
	ctx := context.Background()
	c1, c2 := NewCache(t, h.store), NewCache(t, h.store) // two replicas
	mustSet := func(c *cache.Cache, k string) {
		t.Helper()
		if r, err := c.Set(ctx, k, []byte("v"), time.Minute); err != nil || !r.Stored {
			t.Fatalf("Set(%q): got %+v, %v, want stored", k, r, err)
		}
	}
	mustGet := func(c *cache.Cache, k string, want bool) {
		t.Helper()
		r, err := c.Get(ctx, k)
		if err != nil || r.Found != want || r.Degraded {
			t.Fatalf("Get(%q): got %+v, %v, want found=%v", k, r, err, want)
		}
	}
	mustSet(c1, "a")
	mustSet(c1, "b")
	mustSet(c2, "c")
	mustGet(c2, "a", true)
	mustGet(c2, "b", true)
	mustGet(c1, "c", true)
	mustGet(c1, "zz", false)
	if r, err := c2.Delete(ctx, "c", "zz"); err != nil || r.Deleted != 1 {
		t.Fatalf("Delete: got %+v, %v, want 1 deleted", r, err)
	}

	// Before any flush each replica sees only its own counts.
	WantCounters(t, "c1.Stats before flush", c1, cache.Counters{Hits: 1, Misses: 1, Sets: 2})

	for _, c := range []*cache.Cache{c1, c2} {
		if err := c.Flush(ctx); err != nil {
			t.Fatalf("Flush: %v", err)
		}
	}
	want := cache.Stats{Counters: cache.Counters{Hits: 3, Misses: 1, Sets: 3, Deletes: 1}, Keys: 2, HitRatio: 0.75}
	for i, c := range []*cache.Cache{c1, c2} {
		st, err := c.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st != want {
			t.Errorf("c%d.Stats after flush: got %+v, want %+v", i+1, st, want)
		}
	}
	// A second flush with nothing new changes nothing.
	if err := c1.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := c2.Stats(ctx); st != want {
		t.Errorf("c2.Stats after an empty flush: got %+v, want %+v", st, want)
	}
}

func testCacheRun(t *testing.T, h *harness) {
	c1 := NewCache(t, h.store, cache.WithFlushInterval(20*time.Millisecond))
	c2 := NewCache(t, h.store)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c1.Run(ctx) }()

	if _, err := c1.Get(context.Background(), "missing"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "c2 sees c1's miss", func() bool {
		st, err := c2.Stats(context.Background())
		return err == nil && st.Misses == 1
	})
	if _, err := c1.Set(context.Background(), "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: got %v, want nil after the final flush", err)
	}
	// The final flush carried the Set.
	WantCounters(t, "c2.Stats after c1's Run returned", c2, cache.Counters{Misses: 1, Sets: 1})
}
