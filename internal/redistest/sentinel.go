package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMasterName is the name under which the sentinels of StartSentinel
// monitor the master.
const SentinelMasterName = "mymaster"

// SentinelDownAfter is the sentinels' down-after-milliseconds: a master
// unreachable for this long is failed over (a few seconds in all).
const SentinelDownAfter = time.Second

// sentinelWait bounds each wait for the sentinels to agree.
const sentinelWait = 30 * time.Second

// Sentinel is a master, one replica and three sentinels (quorum 2), private
// redis-server processes on free loopback ports started for a test and
// stopped when it ends. It never uses REDIS_URL.
//
// A Sentinel is safe for concurrent use, except that Failover, KillMaster,
// WaitHealthy and the nodes' Kill and Restart should not race one another.
type Sentinel struct {
	tb        testing.TB
	data      []*Server // the first master, then its replica
	sentinels []*Server
}

// StartSentinel starts the master, its replica and the three sentinels and
// waits until the replica is in sync and every sentinel knows the master,
// the replica and the other sentinels.
func StartSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	bin := lookBinary(tb)
	s := &Sentinel{tb: tb}
	master := startProcess(tb, bin, tb.TempDir(), freePort(tb), "")
	_, mport, _ := net.SplitHostPort(master.Addr())
	replica := startProcess(tb, bin, tb.TempDir(), freePort(tb), "", "--replicaof", "127.0.0.1", mport)
	s.data = []*Server{master, replica}
	conf := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]s 2\n"+
		"sentinel down-after-milliseconds %[1]s %[3]d\n"+
		"sentinel failover-timeout %[1]s 5000\n"+
		"sentinel parallel-syncs %[1]s 1\n",
		SentinelMasterName, mport, SentinelDownAfter.Milliseconds())
	for i := 0; i < 3; i++ {
		dir := tb.TempDir()
		path := filepath.Join(dir, "sentinel.conf") // rewritten by the sentinel
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			tb.Fatalf("redistest: %v", err)
		}
		s.sentinels = append(s.sentinels, startProcess(tb, bin, dir, freePort(tb), path, "--sentinel"))
	}
	s.WaitHealthy()
	return s
}

// URL is the Sentinel URL that internal/redisconn (--redis-url) accepts:
// redis://s1:p1?master_name=mymaster&addr=s2:p2&addr=s3:p3.
func (s *Sentinel) URL() string {
	a := s.SentinelAddrs()
	return "redis://" + a[0] + "?master_name=" + SentinelMasterName + "&addr=" + strings.Join(a[1:], "&addr=")
}

// SentinelAddrs returns the host:port of each sentinel.
func (s *Sentinel) SentinelAddrs() []string {
	out := make([]string, len(s.sentinels))
	for i, n := range s.sentinels {
		out[i] = n.Addr()
	}
	return out
}

// Sentinels returns the sentinel processes.
func (s *Sentinel) Sentinels() []*Server { return append([]*Server(nil), s.sentinels...) }

// DataNodes returns the data nodes: the first master, then its replica
// (roles change with failovers; see Master).
func (s *Sentinel) DataNodes() []*Server { return append([]*Server(nil), s.data...) }

// String describes the deployment for test logs.
func (s *Sentinel) String() string {
	return fmt.Sprintf("redis sentinel %s (data %s, %s)", strings.Join(s.SentinelAddrs(), ","), s.data[0].Addr(), s.data[1].Addr())
}

// Client returns a new failover client (through the sentinels) with short
// timeouts, closed when the test ends.
func (s *Sentinel) Client() *redis.Client {
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:         SentinelMasterName,
		SentinelAddrs:      s.SentinelAddrs(),
		DialTimeout:        200 * time.Millisecond,
		ReadTimeout:        500 * time.Millisecond,
		WriteTimeout:       500 * time.Millisecond,
		MaxRetries:         -1,
		DialerRetries:      1,
		DialerRetryTimeout: 10 * time.Millisecond,
		Protocol:           Protocol,
	})
	s.tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Master returns the data node that the sentinels report as master (they
// must agree).
func (s *Sentinel) Master() *Server {
	s.tb.Helper()
	addr, err := s.agreedMaster()
	if err != nil {
		s.tb.Fatalf("redistest: %v", err)
	}
	return s.dataByAddr(addr)
}

// Failover asks a sentinel for a failover (SENTINEL FAILOVER: the master is
// demoted to a replica, no process dies) and waits until every sentinel
// reports the new master and the deployment is healthy again. It returns the
// new master and how long the switch took.
func (s *Sentinel) Failover() (*Server, time.Duration) {
	s.tb.Helper()
	old := s.Master()
	start := time.Now()
	var err error
	withNode(s.sentinels[0].Addr(), func(rdb *redis.Client) {
		err = rdb.Do(context.Background(), "SENTINEL", "FAILOVER", SentinelMasterName).Err()
	})
	if err != nil {
		s.tb.Fatalf("redistest: SENTINEL FAILOVER: %v", err)
	}
	m := s.waitNewMaster(old)
	return m, time.Since(start)
}

// KillMaster kills (SIGKILL) the master and waits until every sentinel
// reports the promoted replica as master. It returns the killed node (which
// Restart brings back; the sentinels then turn it into a replica, see
// WaitHealthy) and how long the failover took from the kill.
func (s *Sentinel) KillMaster() (*Server, time.Duration) {
	s.tb.Helper()
	old := s.Master()
	start := time.Now()
	old.Kill()
	s.waitNewMaster(old)
	return old, time.Since(start)
}

func (s *Sentinel) waitNewMaster(old *Server) *Server {
	s.tb.Helper()
	var m *Server
	waitFor(s.tb, sentinelWait, "sentinel failover", func() (bool, string) {
		addr, err := s.agreedMaster()
		if err != nil {
			return false, err.Error()
		}
		if addr == old.Addr() {
			return false, "the sentinels still report the old master " + addr
		}
		var info string
		withNode(addr, func(rdb *redis.Client) {
			info, err = rdb.Info(context.Background(), "replication").Result()
		})
		if err != nil || !strings.Contains(info, "role:master") {
			return false, fmt.Sprintf("new master %s does not answer as master yet (%v)", addr, err)
		}
		m = s.dataByAddr(addr)
		return m != nil, "unknown master " + addr
	})
	return m
}

// WaitHealthy waits until the sentinels agree on a running master, every
// other running data node is its replica with the link up, and every running
// sentinel sees the master, those replicas and the other sentinels as up.
func (s *Sentinel) WaitHealthy() {
	s.tb.Helper()
	waitFor(s.tb, sentinelWait, "redis sentinel healthy", s.healthy)
}

func (s *Sentinel) healthy() (bool, string) {
	addr, err := s.agreedMaster()
	if err != nil {
		return false, err.Error()
	}
	m := s.dataByAddr(addr)
	if m == nil || !m.Running() {
		return false, "the sentinels report " + addr + ", which is down"
	}
	replicas, sentinels := 0, 0
	for _, n := range s.data {
		if n == m || !n.Running() {
			continue
		}
		replicas++
		if got := masterAddrOf(n.Addr()); got != addr {
			return false, fmt.Sprintf("%s replicates %q, want %s", n.Addr(), got, addr)
		}
		var info string
		withNode(n.Addr(), func(rdb *redis.Client) {
			info, _ = rdb.Info(context.Background(), "replication").Result()
		})
		if !strings.Contains(info, "master_link_status:up") {
			return false, n.Addr() + " not in sync with the master"
		}
	}
	for _, n := range s.sentinels {
		if n.Running() {
			sentinels++
		}
	}
	for _, n := range s.sentinels {
		if !n.Running() {
			continue
		}
		var (
			master map[string]string
			reps   []map[string]string
		)
		withSentinel(n.Addr(), func(sc *redis.SentinelClient) {
			ctx := context.Background()
			if master, err = sc.Master(ctx, SentinelMasterName).Result(); err == nil {
				reps, err = sc.Replicas(ctx, SentinelMasterName).Result()
			}
		})
		if err != nil {
			return false, fmt.Sprintf("sentinel %s: %v", n.Addr(), err)
		}
		if master["flags"] != "master" {
			return false, fmt.Sprintf("sentinel %s: master flags %q", n.Addr(), master["flags"])
		}
		if got, _ := strconv.Atoi(master["num-other-sentinels"]); got != sentinels-1 {
			return false, fmt.Sprintf("sentinel %s knows %d other sentinels, want %d", n.Addr(), got, sentinels-1)
		}
		up := 0
		for _, r := range reps {
			if r["flags"] == "slave" && r["master-link-status"] == "ok" {
				up++
			}
		}
		if up < replicas {
			return false, fmt.Sprintf("sentinel %s sees %d replicas up, want %d", n.Addr(), up, replicas)
		}
	}
	return true, ""
}

// agreedMaster returns the master address every running sentinel reports.
func (s *Sentinel) agreedMaster() (string, error) {
	agreed := ""
	for _, n := range s.sentinels {
		if !n.Running() {
			continue
		}
		var (
			hp  []string
			err error
		)
		withSentinel(n.Addr(), func(sc *redis.SentinelClient) {
			hp, err = sc.GetMasterAddrByName(context.Background(), SentinelMasterName).Result()
		})
		if err != nil {
			return "", fmt.Errorf("sentinel %s: get-master-addr-by-name: %w", n.Addr(), err)
		}
		if len(hp) != 2 {
			return "", fmt.Errorf("sentinel %s: get-master-addr-by-name: got %v", n.Addr(), hp)
		}
		addr := net.JoinHostPort(hp[0], hp[1])
		if agreed != "" && addr != agreed {
			return "", fmt.Errorf("sentinels disagree: %s or %s", agreed, addr)
		}
		agreed = addr
	}
	if agreed == "" {
		return "", fmt.Errorf("no sentinel is running")
	}
	return agreed, nil
}

func (s *Sentinel) dataByAddr(addr string) *Server {
	for _, n := range s.data {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

// withSentinel runs fn with a short-lived client of the sentinel at addr.
func withSentinel(addr string, fn func(*redis.SentinelClient)) {
	sc := redis.NewSentinelClient(nodeOptions(addr))
	defer sc.Close()
	fn(sc)
}
