package limiter

import (
	"fmt"
	"testing"
	"time"
)

func TestDenyCacheBounded(t *testing.T) {
	c := newDenyCache(16)
	now := time.Unix(1_700_000_000, 0)
	lim := Limit{MaxCalls: 1, Window: time.Second}
	for i := range 1000 {
		c.remember(Request{Key: fmt.Sprint("k", i), Limit: lim, Cost: 1}, now, Result{RetryAfter: time.Second, ResetAfter: time.Second})
		if n := c.len(); n > 16 {
			t.Fatalf("after %d inserts: %d entries, want <= 16", i+1, n)
		}
	}
	// Expired entries go first.
	later := now.Add(2 * time.Second)
	c.remember(Request{Key: "new", Limit: lim, Cost: 1}, later, Result{RetryAfter: time.Second, ResetAfter: time.Second})
	if n := c.len(); n != 1 {
		t.Errorf("after expiry and one insert: %d entries, want 1", n)
	}
}
