package fanout

import (
	"context"
	"testing"
)

// Add and Publish are synchronous: every receive below finds a value or a
// closed channel at once.
func TestSet(t *testing.T) {
	var s Set[int]
	even := s.Add(context.Background(), 1, func(v int) bool { return v%2 == 0 })
	all := s.Add(context.Background(), 2, nil, 7)
	s.Publish(1) // all: 7 1
	s.Publish(2) // even: 2; all is a whole buffer behind: closed
	if v := <-even; v != 2 {
		t.Fatalf("even watcher: got %d, want 2", v)
	}
	for _, want := range []int{7, 1} {
		if v := <-all; v != want {
			t.Fatalf("all watcher: got %d, want %d", v, want)
		}
	}
	if _, ok := <-all; ok {
		t.Fatal("a watcher a whole buffer behind: its channel is open, want closed")
	}
	if n := s.Len(); n != 1 {
		t.Fatalf("Len: got %d, want 1", n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	ended := s.Add(ctx, 1, nil)
	cancel()
	if _, ok := <-ended; ok { // closed by the context's AfterFunc
		t.Fatal("a watcher whose context ended got a value, want its channel closed")
	}
	s.CloseAll()
	if _, ok := <-even; ok {
		t.Fatal("CloseAll: the watcher's channel is open, want closed")
	}
	if n := s.Len(); n != 0 {
		t.Fatalf("Len after CloseAll: got %d, want 0", n)
	}
}
