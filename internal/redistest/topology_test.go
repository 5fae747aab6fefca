package redistest

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// The cluster helper: keys spread over every master, a killed master is
// replaced by its replica, and a client follows.
func TestCluster(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := StartCluster(t, 3, 1)
	t.Logf("cluster of 6 nodes ready in %s", time.Since(start))
	ctx := context.Background()
	rdb := c.Client()
	for _, k := range []string{"foo", "{user1000}.following", "a{}b", "{}", "x{y", "{a}{b}"} {
		want, err := rdb.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := Slot(k); got != int(want) {
			t.Errorf("Slot(%q): got %d, want %d (CLUSTER KEYSLOT)", k, got, want)
		}
	}
	masters := map[*Server]bool{}
	for i := 0; i < 30; i++ {
		k := fmt.Sprintf("k%d", i)
		if err := rdb.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
		masters[c.MasterOf(k)] = true
	}
	if len(masters) != 3 {
		t.Errorf("30 keys on %d masters, want 3", len(masters))
	}
	if m := c.Failover(0); m == nil || c.MasterOf("k1") == nil {
		t.Fatal("no master after a manual failover")
	}
	killed, took := c.KillMasterOf("k1")
	t.Logf("cluster failover of %s took %s", killed.Addr(), took)
	if c.MasterOf("k1") == killed {
		t.Fatalf("k1 still served by the killed master")
	}
	deadline := time.Now().Add(5 * time.Second)
	for rdb.Get(ctx, "k1").Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("client cannot read k1 after the failover: %v", rdb.Get(ctx, "k1").Err())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The sentinel helper: a killed master is replaced by its replica, and a
// failover client follows. (Failover is exercised by breaker/redisstore.)
func TestSentinel(t *testing.T) {
	t.Parallel()
	start := time.Now()
	s := StartSentinel(t)
	t.Logf("sentinel deployment ready in %s", time.Since(start))
	ctx := context.Background()
	rdb := s.Client()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	first := s.Master()
	killed, took := s.KillMaster()
	t.Logf("failover after killing the master took %s", took)
	if killed != first || s.Master() == first {
		t.Fatalf("KillMaster: killed %s, master now %s; want %s killed and another master", killed.Addr(), s.Master().Addr(), first.Addr())
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, err := rdb.Get(ctx, "k").Result()
		if err == nil && v == "v" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET k after the failover: %q, %v; want v", v, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
