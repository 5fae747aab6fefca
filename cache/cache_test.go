package cache_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/topdeck/resilience/internal/clocktest"

	"go.uber.org/goleak"

	"github.com/topdeck/resilience/cache"
	"github.com/topdeck/resilience/cache/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var errDown = errors.New("store down")

// faultyStore wraps a MemoryStore: fail makes every call fail; getGate,
// when set, makes Get wait for it (or for ctx) first; gets counts Gets.
type faultyStore struct {
	*cache.MemoryStore
	fail      atomic.Bool
	failStats atomic.Bool
	lostReply atomic.Bool // AddStats applies the batch, then reports an error
	gets      atomic.Int64
	getGate   atomic.Pointer[chan struct{}]
	panicGet  atomic.Bool // the next Get panics (after the gate)
}

func newFaulty(t *testing.T, opts ...cache.MemoryOption) *faultyStore {
	t.Helper()
	return &faultyStore{MemoryStore: newMemory(t, opts...)}
}

func (f *faultyStore) Get(ctx context.Context, key string) (cache.Entry, bool, error) {
	f.gets.Add(1)
	if g := f.getGate.Load(); g != nil {
		select {
		case <-*g:
		case <-ctx.Done():
			return cache.Entry{}, false, ctx.Err()
		}
	}
	if f.panicGet.Swap(false) {
		panic("store bug")
	}
	if f.fail.Load() {
		return cache.Entry{}, false, errDown
	}
	return f.MemoryStore.Get(ctx, key)
}

func (f *faultyStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if f.fail.Load() {
		return errDown
	}
	return f.MemoryStore.Set(ctx, key, value, ttl)
}

func (f *faultyStore) Delete(ctx context.Context, keys ...string) (int64, error) {
	if f.fail.Load() {
		return 0, errDown
	}
	return f.MemoryStore.Delete(ctx, keys...)
}

func (f *faultyStore) DeletePattern(ctx context.Context, pattern string) (int64, error) {
	if f.fail.Load() {
		return 0, errDown
	}
	return f.MemoryStore.DeletePattern(ctx, pattern)
}

func (f *faultyStore) AddStats(ctx context.Context, d cache.StatsDelta) error {
	if f.failStats.Load() {
		return errDown
	}
	if f.lostReply.Load() {
		_ = f.MemoryStore.AddStats(ctx, d)
		return errDown
	}
	return f.MemoryStore.AddStats(ctx, d)
}

func (f *faultyStore) LoadStats(ctx context.Context) (cache.Counters, error) {
	if f.failStats.Load() {
		return cache.Counters{}, errDown
	}
	return f.MemoryStore.LoadStats(ctx)
}

// gate makes Gets wait until the returned function is called.
func (f *faultyStore) gate() (release func()) {
	ch := make(chan struct{})
	f.getGate.Store(&ch)
	var once sync.Once
	return func() { once.Do(func() { f.getGate.Store(nil); close(ch) }) }
}

// waitGets waits until the store has been asked for at least n Gets.
func (f *faultyStore) waitGets(n int64) {
	for f.gets.Load() < n {
		time.Sleep(time.Millisecond)
	}
}

// getReply is the outcome of a Get run by getAsync.
type getReply struct {
	r   cache.GetResult
	err error
}

// getAsync runs c.Get(ctx, key) on a goroutine and delivers its outcome.
func getAsync(ctx context.Context, c *cache.Cache, key string) <-chan getReply {
	ch := make(chan getReply, 1)
	go func() {
		r, err := c.Get(ctx, key)
		ch <- getReply{r, err}
	}()
	return ch
}

// newGatedCache returns a cache holding k = "v" (store timeout 1m) whose
// store Gets wait until release is called.
func newGatedCache(t *testing.T) (s *faultyStore, c *cache.Cache, release func()) {
	t.Helper()
	s = newFaulty(t)
	c = storetest.NewCache(t, s, cache.WithStoreTimeout(time.Minute))
	if _, err := c.Set(context.Background(), "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	release = s.gate()
	t.Cleanup(release)
	return s, c, release
}

func wantArgumentError(t *testing.T, err error, field, msg string) {
	t.Helper()
	var ae *cache.ArgumentError
	if !errors.As(err, &ae) || !errors.Is(err, cache.ErrInvalidArgument) {
		t.Fatalf("got error %v, want an *ArgumentError for %s", err, field)
	}
	if ae.Field != field {
		t.Errorf("got field %q, want %q", ae.Field, field)
	}
	if msg != "" && err.Error() != msg {
		t.Errorf("got message %q, want %q", err.Error(), msg)
	}
}

func TestCacheRefusesBadArguments(t *testing.T) {
	ctx := context.Background()
	s := newMemory(t)
	c := storetest.NewCache(t, s, cache.WithMaxValueBytes(10))
	long := strings.Repeat("k", cache.MaxKeyBytes+1)
	for _, tc := range []struct {
		name  string
		call  func() error
		field string
		msg   string
	}{
		{"empty key", func() error { _, err := c.Set(ctx, "", []byte("v"), 0); return err }, "key", "cache: key is empty"},
		{"long key", func() error { _, err := c.Set(ctx, long, []byte("v"), 0); return err }, "key", "cache: key is 257 bytes, above the 256-byte limit"},
		{"negative ttl", func() error { _, err := c.Set(ctx, "k", []byte("v"), -time.Second); return err }, "ttl", "cache: ttl is -1s, must not be negative"},
		{"big value", func() error { _, err := c.Set(ctx, "k", make([]byte, 11), 0); return err }, "value", "cache: value is 11 bytes, above max_value_bytes 10"},
		{"get empty key", func() error { _, err := c.Get(ctx, ""); return err }, "key", ""},
		{"delete long key", func() error { _, err := c.Delete(ctx, "ok", long); return err }, "key", ""},
		{"empty pattern", func() error { _, err := c.DeletePattern(ctx, ""); return err }, "pattern", "cache: pattern is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantArgumentError(t, tc.call(), tc.field, tc.msg) })
	}
	if n, _ := s.Len(ctx); n != 0 {
		t.Errorf("Len after refused calls: got %d, want 0", n)
	}
	// The limit itself is accepted.
	if r, err := c.Set(ctx, strings.Repeat("k", cache.MaxKeyBytes), make([]byte, 10), 0); err != nil || !r.Stored {
		t.Errorf("Set at the limits: got %+v, %v, want stored", r, err)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	s := newMemory(t)
	for _, tc := range []struct {
		opt   cache.Option
		field string
	}{
		{cache.WithDefaultTTL(0), "default_ttl"},
		{cache.WithMaxValueBytes(0), "max_value_bytes"},
		{cache.WithStoreTimeout(-1), "store_timeout"},
		{cache.WithFlushInterval(0), "flush_interval"},
	} {
		_, err := cache.New(s, tc.opt)
		wantArgumentError(t, err, tc.field, "")
	}
	_, err := cache.New(nil)
	wantArgumentError(t, err, "store", "")
}

func TestCacheDefaultTTL(t *testing.T) {
	ctx := context.Background()
	clk := clocktest.New(time.Unix(0, 0))
	c := storetest.NewCache(t, newMemory(t, cache.WithClock(clk.Now)), cache.WithDefaultTTL(time.Hour))
	r, err := c.Set(ctx, "k", []byte("v"), 0)
	if err != nil || !r.Stored || r.TTL != time.Hour {
		t.Fatalf("Set(ttl 0): got %+v, %v, want stored with TTL 1h", r, err)
	}
	g, err := c.Get(ctx, "k")
	if err != nil || !g.Found || g.TTL != time.Hour || string(g.Value) != "v" {
		t.Errorf("Get: got %+v, %v, want v with TTL 1h", g, err)
	}
	clk.Advance(time.Hour)
	if g, _ := c.Get(ctx, "k"); g.Found {
		t.Errorf("Get after the default TTL: got %+v, want not found", g)
	}
}

func TestCacheDegradesWhenStoreFails(t *testing.T) {
	ctx := context.Background()
	s := newFaulty(t)
	// Every call after a failure probes the store (a 1 ns retry interval),
	// so each one sees the store's own error; the skipping of a store
	// known to be down is TestCacheSkipsStoreKnownDown.
	c := storetest.NewCache(t, s, cache.WithRetryInterval(time.Nanosecond))
	if _, err := c.Set(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	s.fail.Store(true)

	g, err := c.Get(ctx, "k")
	if err != nil || g.Found || !g.Degraded || g.Value != nil {
		t.Errorf("Get: got %+v, %v, want degraded not found", g, err)
	}
	if !errors.Is(g.Err, cache.ErrStoreUnavailable) || !errors.Is(g.Err, errDown) {
		t.Errorf("Get.Err: got %v, want ErrStoreUnavailable wrapping the store error", g.Err)
	}
	sr, err := c.Set(ctx, "k2", []byte("v"), 0)
	if err != nil || sr.Stored || !sr.Degraded || !errors.Is(sr.Err, errDown) {
		t.Errorf("Set: got %+v, %v, want degraded not stored", sr, err)
	}
	dr, err := c.Delete(ctx, "k")
	if err != nil || !dr.Degraded || !errors.Is(dr.Err, errDown) {
		t.Errorf("Delete: got %+v, %v, want degraded", dr, err)
	}
	pr, err := c.DeletePattern(ctx, "*")
	if err != nil || !pr.Degraded {
		t.Errorf("DeletePattern: got %+v, %v, want degraded", pr, err)
	}

	s.fail.Store(false)
	if _, ok, _ := s.MemoryStore.Get(ctx, "k2"); ok {
		t.Errorf("k2 is in the store after a degraded Set, want absent")
	}
	g, err = c.Get(ctx, "k")
	if err != nil || !g.Found || g.Degraded {
		t.Errorf("Get after recovery: got %+v, %v, want found", g, err)
	}
	storetest.WantCounters(t, "Stats", c, cache.Counters{Hits: 1, Sets: 1, Errors: 4})
}

func TestCacheSkipsStoreKnownDown(t *testing.T) {
	ctx := context.Background()
	s := newFaulty(t)
	c := storetest.NewCache(t, s, cache.WithRetryInterval(time.Hour))
	s.fail.Store(true)
	if g, _ := c.Get(ctx, "k"); !g.Degraded || !errors.Is(g.Err, errDown) {
		t.Fatalf("first Get: got %+v, want degraded with the store's error", g)
	}
	if c.StoreHealthy() {
		t.Errorf("StoreHealthy after a store failure: got true, want false")
	}
	s.fail.Store(false) // back, but the Cache waits for its retry interval
	g, err := c.Get(ctx, "k")
	if err != nil || !g.Degraded || !errors.Is(g.Err, cache.ErrStoreUnavailable) || errors.Is(g.Err, errDown) {
		t.Errorf("Get within the retry interval: got %+v, %v; want degraded without calling the store", g, err)
	}
	sr, err := c.Set(ctx, "k", []byte("v"), 0)
	if err != nil || sr.Stored || !sr.Degraded {
		t.Errorf("Set within the retry interval: got %+v, %v; want degraded, not stored", sr, err)
	}
	if _, ok, _ := s.MemoryStore.Get(ctx, "k"); ok {
		t.Errorf("the store got a Set while known down")
	}
}

func TestCacheStatsWhenStatsStoreFails(t *testing.T) {
	ctx := context.Background()
	s := newFaulty(t)
	c := storetest.NewCache(t, s)
	if _, err := c.Get(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	s.failStats.Store(true)
	if err := c.Flush(ctx); !errors.Is(err, errDown) {
		t.Fatalf("Flush: got %v, want the store error", err)
	}
	if _, err := c.Get(ctx, "b"); err != nil { // counted while a batch waits
		t.Fatal(err)
	}
	st, err := c.Stats(ctx)
	if !errors.Is(err, cache.ErrStoreUnavailable) {
		t.Errorf("Stats: got error %v, want ErrStoreUnavailable", err)
	}
	if st.Misses != 2 {
		t.Errorf("Stats while failing: got %d misses, want the 2 local ones", st.Misses)
	}

	// The reply of the next flush is lost after the store applied it: the
	// retry must not count it twice.
	s.failStats.Store(false)
	s.lostReply.Store(true)
	if err := c.Flush(ctx); err == nil {
		t.Fatal("Flush with a lost reply: got nil, want an error")
	}
	s.lostReply.Store(false)
	for i := 0; i < 2; i++ {
		if err := c.Flush(ctx); err != nil {
			t.Fatalf("Flush: %v", err)
		}
	}
	total, _ := s.MemoryStore.LoadStats(ctx)
	if want := (cache.Counters{Misses: 2}); total != want {
		t.Errorf("stored totals: got %+v, want %+v (no loss, no double count)", total, want)
	}
	if st, _ := c.Stats(ctx); st.Misses != 2 {
		t.Errorf("Stats: got %d misses, want 2", st.Misses)
	}
}

func TestCacheSingleFlight(t *testing.T) {
	ctx := context.Background()
	s := newFaulty(t)
	c := storetest.NewCache(t, s)
	if _, err := c.Set(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	release := s.gate()
	const n = 10
	var wg sync.WaitGroup
	results := make(chan cache.GetResult, n)
	for i := 0; i < n; i++ {
		wg.Go(func() {
			r, err := c.Get(ctx, "k")
			if err != nil {
				t.Error(err)
			}
			results <- r
		})
	}
	// Wait until one Get reached the store, give the others time to join.
	s.waitGets(1)
	time.Sleep(50 * time.Millisecond)
	release()
	wg.Wait()
	close(results)
	for r := range results {
		if !r.Found || string(r.Value) != "v" {
			t.Errorf("Get: got %+v, want v", r)
		}
	}
	if got := s.gets.Load(); got >= n {
		t.Errorf("store Gets: got %d for %d concurrent callers, want them shared", got, n)
	}
	if st, _ := c.Stats(ctx); st.Hits != n {
		t.Errorf("hits: got %d, want %d (one per caller)", st.Hits, n)
	}
}

func TestCacheGetCancelledCallers(t *testing.T) {
	s := newFaulty(t)
	c := storetest.NewCache(t, s)
	release := s.gate()
	defer release()

	lctx, lcancel := context.WithCancel(context.Background())
	leader := getAsync(lctx, c, "k")
	s.waitGets(1)
	// A caller waiting for the leader's store call returns at once.
	fctx, fcancel := context.WithCancel(context.Background())
	follower := getAsync(fctx, c, "k")
	time.Sleep(20 * time.Millisecond) // let it join the flight
	fcancel()
	select {
	case g := <-follower:
		if !errors.Is(g.err, context.Canceled) {
			t.Errorf("follower Get: got %v, want context.Canceled", g.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a follower's Get did not return after its ctx was cancelled")
	}
	// The leader returns when its store call ends, with its ctx's error.
	lcancel()
	release()
	if g := <-leader; !errors.Is(g.err, context.Canceled) {
		t.Errorf("leader Get: got %v, want context.Canceled", g.err)
	}

	// A caller whose deadline passes while its store call hangs returns
	// within the store timeout.
	release = s.gate()
	dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer dcancel()
	if _, err := c.Get(dctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get past the caller's deadline: got %v, want DeadlineExceeded", err)
	}
	release()
	if st, _ := c.Stats(context.Background()); !st.Counters.IsZero() {
		t.Errorf("Stats: got %+v, want nothing counted for cancelled callers", st.Counters)
	}
}

func TestCacheGetLeaderCancelledFollowersGetItsAnswer(t *testing.T) {
	s, c, release := newGatedCache(t)
	lctx, cancel := context.WithCancel(context.Background())
	leader := getAsync(lctx, c, "k")
	s.waitGets(1)
	follower := getAsync(context.Background(), c, "k")
	time.Sleep(20 * time.Millisecond) // let the follower join the leader's flight
	cancel()
	release()
	if g := <-leader; !errors.Is(g.err, context.Canceled) {
		t.Errorf("leader Get: got %v, want context.Canceled", g.err)
	}
	if g := <-follower; g.err != nil || !g.r.Found || g.r.Degraded || string(g.r.Value) != "v" {
		t.Errorf("follower Get: got %+v, %v, want v (the leader's cancellation does not cut the shared call)", g.r, g.err)
	}
	if n := s.gets.Load(); n != 1 {
		t.Errorf("store Gets: got %d, want 1 (shared)", n)
	}
	st, _ := c.Stats(context.Background())
	if st.Errors != 0 || st.Hits != 1 {
		t.Errorf("Stats: got %+v, want 1 hit (the follower's) and no error", st.Counters)
	}
}

func TestCacheGetLeaderPanicDoesNotStrandFollowers(t *testing.T) {
	s, c, release := newGatedCache(t)
	s.panicGet.Store(true)
	recovered := make(chan any, 1)
	go func() {
		defer func() { recovered <- recover() }()
		_, _ = c.Get(context.Background(), "k")
	}()
	s.waitGets(1)
	follower := getAsync(context.Background(), c, "k")
	time.Sleep(20 * time.Millisecond) // let the follower join the leader's flight
	release()
	if p := <-recovered; p == nil {
		t.Fatal("the leader's Get did not panic; the store's panic must reach its caller")
	}
	select {
	case g := <-follower:
		if g.err != nil || !g.r.Found || string(g.r.Value) != "v" {
			t.Errorf("follower Get: got %+v, %v, want v", g.r, g.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the follower still waits for a flight whose leader panicked")
	}
}

func TestCacheStoreTimeoutDegrades(t *testing.T) {
	s := newFaulty(t)
	c := storetest.NewCache(t, s, cache.WithStoreTimeout(20*time.Millisecond))
	release := s.gate() // the store hangs
	defer release()
	g, err := c.Get(context.Background(), "k")
	if err != nil || !g.Degraded || !errors.Is(g.Err, context.DeadlineExceeded) {
		t.Errorf("Get on a hung store: got %+v, %v, want degraded with DeadlineExceeded", g, err)
	}
}

func TestCacheWriteHidesOlderFlight(t *testing.T) {
	ctx := context.Background()
	for _, step := range []struct {
		name  string
		write func(c *cache.Cache)
		want  string // "" for not found
	}{
		{"Set", func(c *cache.Cache) { _, _ = c.Set(ctx, "k", []byte("new"), 0) }, "new"},
		{"Delete", func(c *cache.Cache) { _, _ = c.Delete(ctx, "k") }, ""},
		{"DeletePattern", func(c *cache.Cache) { _, _ = c.DeletePattern(ctx, "k*") }, ""},
	} {
		t.Run(step.name, func(t *testing.T) {
			s := newFaulty(t)
			c := storetest.NewCache(t, s)
			if _, err := c.Set(ctx, "k", []byte("old"), 0); err != nil {
				t.Fatal(err)
			}
			release := s.gate()
			first := make(chan cache.GetResult, 1)
			go func() { // a Get in flight that read (or will read) the old value
				r, _ := c.Get(ctx, "k")
				first <- r
			}()
			s.waitGets(1)
			s.getGate.Store(nil) // later store Gets go straight through
			step.write(c)
			r, err := c.Get(ctx, "k")
			if err != nil || r.Degraded || string(r.Value) != step.want || r.Found != (step.want != "") {
				t.Errorf("Get after %s: got %+v, %v, want %q", step.name, r, err, step.want)
			}
			release()
			<-first
		})
	}
}

func TestCacheRunStopsAndFlushes(t *testing.T) {
	ctx := context.Background()
	s := newMemory(t)
	c := storetest.NewCache(t, s, cache.WithFlushInterval(10*time.Millisecond))
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx) }()
	if _, err := c.Set(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	total, _ := s.LoadStats(ctx)
	if total.Sets != 1 {
		t.Errorf("stored sets after Run: got %d, want 1", total.Sets)
	}
}

// plainStore hides the StatsStore methods of a MemoryStore.
type plainStore struct{ cache.Store }

func TestCacheStatsWithoutStatsStore(t *testing.T) {
	ctx := context.Background()
	c := storetest.NewCache(t, plainStore{newMemory(t)})
	_, _ = c.Set(ctx, "k", []byte("v"), 0)
	_, _ = c.Get(ctx, "k")
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := c.Stats(ctx)
	want := cache.Stats{Counters: cache.Counters{Hits: 1, Sets: 1}, Keys: 1, HitRatio: 1}
	if err != nil || st != want {
		t.Errorf("Stats: got %+v, %v, want %+v", st, err, want)
	}
}

func TestSetLimitsAppliesToLaterSets(t *testing.T) {
	store, err := cache.NewMemoryStore()
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.New(store, cache.WithMaxValueBytes(4), cache.WithDefaultTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Set(ctx, "k", []byte("12345"), 0); !errors.Is(err, cache.ErrInvalidArgument) {
		t.Fatalf("5 bytes over a limit of 4: got %v, want an invalid argument", err)
	}
	if err := c.SetLimits(time.Hour, 8); err != nil {
		t.Fatal(err)
	}
	res, err := c.Set(ctx, "k", []byte("12345"), 0)
	if err != nil || !res.Stored || res.TTL != time.Hour {
		t.Errorf("after SetLimits(1h, 8): got %+v, %v; want stored with ttl 1h", res, err)
	}
	for _, bad := range []struct {
		ttl time.Duration
		n   int
	}{{0, 8}, {time.Hour, 0}} {
		if err := c.SetLimits(bad.ttl, bad.n); !errors.Is(err, cache.ErrInvalidArgument) {
			t.Errorf("SetLimits(%v, %d): got %v, want an invalid argument", bad.ttl, bad.n, err)
		}
	}
}
