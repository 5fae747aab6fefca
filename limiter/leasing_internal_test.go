package limiter

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/topdeck/resilience/internal/clocktest"
)

// TestLeaseTableBounded checks that the leases of keys no longer used are
// dropped: the table holds at most about twice the keys leased within two
// TTLs (a sweep runs once the calls since the last one reach what it left).
func TestLeaseTableBounded(t *testing.T) {
	clock := clocktest.New(time.Unix(1_700_000_000, 0))
	l := New(NewMemoryStore(WithMemoryClock(clock.Now)), WithClock(clock.Now))
	pol := LeasePolicy{MaxTokens: 4, TTL: 10 * time.Millisecond}
	lim := Limit{MaxCalls: 100, Window: time.Second}
	for i := range 1000 {
		if _, err := l.Acquire(context.Background(), Request{Key: fmt.Sprint("k", i), Limit: lim, Cost: 1, Lease: pol}); err != nil {
			t.Fatal(err)
		}
		clock.Advance(100 * time.Microsecond) // 100 keys per TTL
	}
	if n := l.leases.len(); n > 2*200+minSweep {
		t.Errorf("%d lease entries after 1000 keys at 100 per TTL, want at most about 400", n)
	}
}
