package cache_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/topdeck/resilience/internal/clocktest"

	"github.com/topdeck/resilience/cache"
	"github.com/topdeck/resilience/cache/storetest"
)

func TestMemoryStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) cache.Store {
		return newMemory(t, cache.WithClock(now))
	})
}

func newMemory(t *testing.T, opts ...cache.MemoryOption) *cache.MemoryStore {
	t.Helper()
	s, err := cache.NewMemoryStore(opts...)
	if err != nil {
		t.Fatalf("NewMemoryStore: %v", err)
	}
	return s
}

func TestMemoryStoreExpiryBoundary(t *testing.T) {
	ctx := context.Background()
	clk := clocktest.New(time.Unix(1000, 0))
	s := newMemory(t, cache.WithClock(clk.Now))
	if err := s.Set(ctx, "k", []byte("v"), time.Second); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		advance  time.Duration
		wantOK   bool
		wantTTL  time.Duration
		wantSize int64
	}{
		{0, true, time.Second, 1},
		{999 * time.Millisecond, true, time.Millisecond, 1},
		{time.Millisecond - 1, true, 1, 1},
		{1, false, 0, 0}, // dead from its expiry instant on
	}
	for i, st := range steps {
		clk.Advance(st.advance)
		e, ok, err := s.Get(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		if ok != st.wantOK || e.TTL != st.wantTTL {
			t.Errorf("step %d: got found=%v TTL=%v, want found=%v TTL=%v", i, ok, e.TTL, st.wantOK, st.wantTTL)
		}
		if n, _ := s.Len(ctx); n != st.wantSize {
			t.Errorf("step %d: Len got %d, want %d", i, n, st.wantSize)
		}
	}
}

func TestMemoryStoreLRUMaxEntries(t *testing.T) {
	ctx := context.Background()
	s := newMemory(t, cache.WithMaxEntries(3))
	for _, k := range []string{"a", "b", "c"} {
		if err := s.Set(ctx, k, []byte(k), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, _ := s.Get(ctx, "a"); !ok { // a is now the most recently used
		t.Fatal("Get(a): got not found, want found")
	}
	if err := s.Set(ctx, "d", []byte("d"), time.Minute); err != nil { // evicts b
		t.Fatal(err)
	}
	for k, want := range map[string]bool{"a": true, "b": false, "c": true, "d": true} {
		if _, ok, _ := s.Get(ctx, k); ok != want {
			t.Errorf("Get(%q): got found=%v, want %v", k, ok, want)
		}
	}
	if n, _ := s.Len(ctx); n != 3 {
		t.Errorf("Len: got %d, want 3", n)
	}
}

func TestMemoryStoreLRUMaxBytes(t *testing.T) {
	ctx := context.Background()
	// Room for three 1000-byte values with their overhead, not four.
	s := newMemory(t, cache.WithMaxBytes(3*1200))
	val := make([]byte, 1000)
	for i := 0; i < 10; i++ {
		if err := s.Set(ctx, fmt.Sprint("k", i), val, time.Minute); err != nil {
			t.Fatal(err)
		}
		if b := s.Bytes(); b > 3*1200 {
			t.Fatalf("after Set %d: Bytes got %d, want <= %d", i, b, 3*1200)
		}
	}
	if n, _ := s.Len(ctx); n != 3 {
		t.Errorf("Len: got %d, want 3", n)
	}
	for i, want := range map[int]bool{6: false, 7: true, 8: true, 9: true} {
		if _, ok, _ := s.Get(ctx, fmt.Sprint("k", i)); ok != want {
			t.Errorf("Get(k%d): got found=%v, want %v", i, ok, want)
		}
	}
	err := s.Set(ctx, "huge", make([]byte, 4000), time.Minute)
	if !errors.Is(err, cache.ErrEntryTooLarge) {
		t.Errorf("Set(huge): got %v, want ErrEntryTooLarge", err)
	}
	if n, _ := s.Len(ctx); n != 3 {
		t.Errorf("Len after refused Set: got %d, want 3 (nothing evicted)", n)
	}
}

func TestNewMemoryStoreBadOptions(t *testing.T) {
	for _, tc := range []struct {
		opt   cache.MemoryOption
		field string
	}{
		{cache.WithMaxEntries(-1), "max_entries"},
		{cache.WithMaxBytes(0), "max_bytes"},
	} {
		_, err := cache.NewMemoryStore(tc.opt)
		var ae *cache.ArgumentError
		if !errors.As(err, &ae) || ae.Field != tc.field {
			t.Errorf("NewMemoryStore: got %v, want an ArgumentError for %s", err, tc.field)
		}
	}
}
