package tests

import (
	"testing"
	"time"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/internal/redistest"
)

// fleet is several replicas sharing one Redis.
type fleet struct {
	redis    *redistest.Server
	replicas []*replica
}

// startFleet starts n replicas of resilienced on one private redis-server,
// all with the configuration yaml.
func startFleet(t *testing.T, n int, yaml string) *fleet {
	t.Helper()
	f := &fleet{redis: redistest.Start(t)}
	args := []string{"--redis-url", f.redis.URL()}
	if yaml != "" {
		args = append(args, "--config", writeConfig(t, yaml))
	}
	for i := 0; i < n; i++ {
		f.replicas = append(f.replicas, startReplica(t, args...))
	}
	return f
}

// rs returns the ResilienceService client of replica i.
func (f *fleet) rs(i int) resiliencev1.ResilienceServiceClient {
	return resiliencev1.NewResilienceServiceClient(f.replicas[i%len(f.replicas)].conn)
}

// cs returns the CacheService client of replica i.
func (f *fleet) cs(i int) resiliencev1.CacheServiceClient {
	return resiliencev1.NewCacheServiceClient(f.replicas[i%len(f.replicas)].conn)
}

// eventually polls cond every 20ms until it holds or d has passed.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
