package fanout

import (
	"context"
	"testing"
)

// drain returns what ch holds and whether it is closed.
func drain(t *testing.T, ch <-chan int) (got []int, closed bool) {
	t.Helper()
	for {
		select {
		case v, ok := <-ch:
			if !ok {
				return got, true
			}
			got = append(got, v)
		default:
			return got, false
		}
	}
}

func TestSet(t *testing.T) {
	var s Set[int]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	even := s.Add(ctx, 2, func(v int) bool { return v%2 == 0 })
	all := s.Add(ctx, 3, nil, 7)
	s.Publish(1)
	s.Publish(2)
	if got, closed := drain(t, even); len(got) != 1 || got[0] != 2 || closed {
		t.Fatalf("even watcher: got %v (closed %v), want [2] open", got, closed)
	}
	if got, closed := drain(t, all); len(got) != 3 || got[0] != 7 || got[1] != 1 || got[2] != 2 || closed {
		t.Fatalf("all watcher: got %v (closed %v), want [7 1 2] open", got, closed)
	}
	for v := range 4 { // the even watcher's buffer is 2
		s.Publish(2 * v)
	}
	if got, closed := drain(t, even); len(got) != 2 || !closed {
		t.Fatalf("slow watcher: got %v (closed %v), want 2 values, then closed", got, closed)
	}
	if n := s.Len(); n != 0 {
		t.Fatalf("Len after both fell behind: got %d, want 0", n)
	}
	late := s.Add(ctx, 1, nil)
	s.CloseAll()
	if _, closed := drain(t, late); !closed {
		t.Fatal("CloseAll: the watcher's channel is open, want closed")
	}
}
