package redisstore_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/topdeck/resilience/internal/redistest"
	"github.com/topdeck/resilience/limiter"
	"github.com/topdeck/resilience/limiter/redisstore"
	"github.com/topdeck/resilience/limiter/storetest"
)

// TestLeaseConformance runs the lease-mode suite on one Redis and on a
// 3-master Cluster.
func TestLeaseConformance(t *testing.T) {
	var n atomic.Int64
	run := func(t *testing.T, client redis.UniversalClient) {
		storetest.RunLease(t, func(t *testing.T, now func() time.Time) limiter.Store {
			prefix := fmt.Sprintf("lease%d:", n.Add(1))
			return redisstore.New(client, redisstore.WithPrefix(prefix), redisstore.WithClockForTesting(now))
		})
	}
	t.Run("single", func(t *testing.T) { run(t, redistest.Start(t).Client()) })
	t.Run("cluster", func(t *testing.T) { run(t, redistest.StartCluster(t, 3, 0).Client()) })
}
