package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/topdeck/resilience/breaker"
)

func ev(name string, gen uint64) breaker.Event {
	return breaker.Event{Name: name, From: breaker.StateClosed, To: breaker.StateOpen, Generation: gen, Reason: breaker.ReasonReset}
}

// recv returns what is in ch now (never waits): the events, and whether ch
// is closed.
func recv(ch <-chan breaker.Event) (got []breaker.Event, closed bool) {
	for range 1000 {
		select {
		case e, ok := <-ch:
			if !ok {
				return got, true
			}
			got = append(got, e)
		default:
			return got, false
		}
	}
	return got, false
}

func TestHubFansOutWithoutBlocking(t *testing.T) {
	h := breaker.NewHub(4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fast, _ := h.Watch(ctx, "a/")
	slow, _ := h.Watch(ctx, "a/")
	other, _ := h.Watch(ctx, "b/")
	if n := h.Len(); n != 3 {
		t.Fatalf("Len: got %d, want 3", n)
	}
	for i := range 10 {
		h.Publish(ev("a/x", uint64(i)))
		got, closed := recv(fast)
		if closed || len(got) != 1 || got[0].Generation != uint64(i) {
			t.Fatalf("fast watcher after event %d: got %v (closed %v), want that event", i, got, closed)
		}
	}
	// The slow watcher got a buffer's worth, then was disconnected.
	got, closed := recv(slow)
	if len(got) != 4 || !closed {
		t.Fatalf("slow watcher: got %d events (closed %v), want the 4 that fit its buffer, then its channel closed", len(got), closed)
	}
	if got, closed := recv(other); len(got) != 0 || closed {
		t.Fatalf("watcher of another prefix: got %v (closed %v), want nothing", got, closed)
	}
	// A resync marker goes to every watcher.
	h.Publish(breaker.Event{Reason: breaker.ReasonResync})
	for name, ch := range map[string]<-chan breaker.Event{"fast": fast, "other": other} {
		if got, _ := recv(ch); len(got) != 1 || got[0].Reason != breaker.ReasonResync {
			t.Fatalf("%s watcher after a resync: got %v, want the marker", name, got)
		}
	}
	if n := h.Len(); n != 2 {
		t.Fatalf("Len after the slow watcher was disconnected: got %d, want 2", n)
	}
}

func TestHubEndsWatchersWithContextAndClose(t *testing.T) {
	h := breaker.NewHub(0)
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := h.Watch(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	keep, _ := h.Watch(context.Background(), "")
	cancel()
	for range ch { // closed once ctx ended
	}
	h.Publish(ev("x", 1)) // no send on the closed channel
	if got, _ := recv(keep); len(got) != 1 {
		t.Fatalf("remaining watcher: got %v, want the event", got)
	}
	h.Close()
	if _, closed := recv(keep); !closed {
		t.Fatalf("watcher after Close: channel open, want closed")
	}
	if _, err := h.Watch(context.Background(), ""); !errors.Is(err, breaker.ErrStoreUnavailable) {
		t.Fatalf("Watch after Close: got %v, want ErrStoreUnavailable", err)
	}
	h.Close() // idempotent
	done, stop := context.WithCancel(context.Background())
	stop()
	if _, err := breaker.NewHub(1).Watch(done, ""); err == nil {
		t.Fatalf("Watch with an ended context: got no error")
	}
}

func BenchmarkHubPublish(b *testing.B) {
	h := breaker.NewHub(0)
	defer h.Close()
	for i := range 100 {
		ch, _ := h.Watch(context.Background(), fmt.Sprintf("p%d/", i))
		go func() {
			for range ch {
			}
		}()
	}
	e := ev("p7/x", 1)
	b.ReportAllocs()
	for b.Loop() {
		h.Publish(e)
	}
}
