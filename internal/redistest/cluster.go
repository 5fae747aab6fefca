package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClusterNodeTimeout is the cluster-node-timeout of the nodes StartCluster
// starts: a master unreachable for this long is failed over to its replica
// (about two or three times this in all).
const ClusterNodeTimeout = time.Second

// clusterWait bounds each wait for the cluster to be created or healed.
const clusterWait = 30 * time.Second

// Cluster is a Redis Cluster of private redis-server processes on free
// loopback ports, started for a test and stopped when it ends. It never uses
// REDIS_URL.
//
// A Cluster is safe for concurrent use, except that KillMaster, Heal and the
// nodes' Kill and Restart should not race one another.
type Cluster struct {
	tb      testing.TB
	masters int
	nodes   []*Server // in creation order: the first masters are the masters
}

// StartCluster starts masters (at least 3) master nodes with
// replicasPerMaster replicas each, creates the cluster with
// `redis-cli --cluster create`, and waits until every node reports
// cluster_state:ok, agrees on the slot map and every replica is in sync.
// The nodes are killed when the test ends.
func StartCluster(tb testing.TB, masters, replicasPerMaster int) *Cluster {
	tb.Helper()
	if masters < 3 {
		tb.Fatalf("redistest: StartCluster(%d, %d): Redis Cluster needs at least 3 masters", masters, replicasPerMaster)
	}
	if replicasPerMaster < 0 {
		tb.Fatalf("redistest: StartCluster: replicasPerMaster %d < 0", replicasPerMaster)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		tb.Fatalf("redistest: redis-cli not found in PATH (%v); install it with `sudo apt-get install -y redis-tools`", err)
	}
	bin := lookBinary(tb)
	c := &Cluster{tb: tb, masters: masters}
	n := masters * (1 + replicasPerMaster)
	for i := 0; i < n; i++ {
		dir := tb.TempDir()
		port := freePort(tb)
		c.nodes = append(c.nodes, startProcess(tb, bin, dir, port, "",
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes-"+strconv.Itoa(port)+".conf"),
			// The bus port is given: port+10000 may not exist for
			// ephemeral ports.
			"--cluster-port", strconv.Itoa(freePort(tb)),
			"--cluster-node-timeout", strconv.FormatInt(ClusterNodeTimeout.Milliseconds(), 10),
		))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicasPerMaster), "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("redistest: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	c.WaitHealthy()
	return c
}

// Nodes returns every node, masters first as created (roles change with
// failovers; see MasterOf).
func (c *Cluster) Nodes() []*Server { return append([]*Server(nil), c.nodes...) }

// Addrs returns the host:port of every node.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.Addr()
	}
	return out
}

// URL is the cluster URL that internal/redisconn (--redis-url) accepts:
// redis://h1:p1?addr=h2:p2&addr=h3:p3..., every node as a seed.
func (c *Cluster) URL() string {
	addrs := c.Addrs()
	return "redis://" + addrs[0] + "?addr=" + strings.Join(addrs[1:], "&addr=")
}

// String describes the cluster for test logs.
func (c *Cluster) String() string {
	return fmt.Sprintf("redis cluster %s", strings.Join(c.Addrs(), ","))
}

// Client returns a new cluster client, closed when the test ends. Its
// timeouts are short and it refreshes its slot map every 500ms, so that it
// follows failovers quickly.
func (c *Cluster) Client() *redis.ClusterClient {
	cc := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                      c.Addrs(),
		DialTimeout:                200 * time.Millisecond,
		ReadTimeout:                500 * time.Millisecond,
		WriteTimeout:               500 * time.Millisecond,
		DialerRetries:              1,
		DialerRetryTimeout:         10 * time.Millisecond,
		ClusterStateReloadInterval: 500 * time.Millisecond,
		Protocol:                   Protocol,
	})
	c.tb.Cleanup(func() { _ = cc.Close() })
	return cc
}

// Slot returns the hash slot of key (CLUSTER KEYSLOT rules, hash tags
// included).
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % 16384)
}

// crc16 is CRC16-CCITT (XMODEM), the checksum of Redis Cluster key slots.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// shardSlot is a slot in the middle of shard i's range as created by
// redis-cli (the slots are split evenly, in node order).
func (c *Cluster) shardSlot(i int) int {
	if i < 0 || i >= c.masters {
		c.tb.Fatalf("redistest: shard %d out of range [0, %d)", i, c.masters)
	}
	return (2*i + 1) * 16384 / (2 * c.masters)
}

// MasterOf returns the node that currently serves key's slot as master, as
// the running nodes see it.
func (c *Cluster) MasterOf(key string) *Server {
	c.tb.Helper()
	return c.masterOfSlot(Slot(key))
}

func (c *Cluster) masterOfSlot(slot int) *Server {
	c.tb.Helper()
	for _, n := range c.nodes {
		if !n.Running() {
			continue
		}
		m, err := slotMasters(n.Addr())
		if err != nil {
			continue
		}
		if s := c.byAddr(m[slot]); s != nil {
			return s
		}
	}
	c.tb.Fatalf("redistest: no running node knows the master of slot %d", slot)
	return nil
}

func (c *Cluster) byAddr(addr string) *Server {
	for _, n := range c.nodes {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

// KillMaster kills (SIGKILL) the current master of shard i (0 <= i <
// masters, in the order of the slot ranges) and waits until a replica has
// been promoted and every running node reports cluster_state:ok again. It
// returns the killed node, which Restart brings back as a replica (then call
// WaitHealthy), and how long the failover took from the kill.
func (c *Cluster) KillMaster(i int) (*Server, time.Duration) {
	c.tb.Helper()
	return c.killMasterOfSlot(c.shardSlot(i))
}

// KillMasterOf is KillMaster for the shard that holds key.
func (c *Cluster) KillMasterOf(key string) (*Server, time.Duration) {
	c.tb.Helper()
	return c.killMasterOfSlot(Slot(key))
}

func (c *Cluster) killMasterOfSlot(slot int) (*Server, time.Duration) {
	c.tb.Helper()
	m := c.masterOfSlot(slot)
	start := time.Now()
	m.Kill()
	c.WaitHealthy()
	if now := c.masterOfSlot(slot); now == m {
		c.tb.Fatalf("redistest: slot %d still served by the killed %s", slot, m.Addr())
	}
	return m, time.Since(start)
}

// Failover makes a replica of shard i take over from its master with
// CLUSTER FAILOVER (a manual, lossless failover; no process dies) and waits
// until the cluster is healthy again. It returns the new master.
func (c *Cluster) Failover(i int) *Server {
	c.tb.Helper()
	slot := c.shardSlot(i)
	old := c.masterOfSlot(slot)
	var replica *Server
	for _, n := range c.nodes {
		if n != old && n.Running() && masterAddrOf(n.Addr()) == old.Addr() {
			replica = n
			break
		}
	}
	if replica == nil {
		c.tb.Fatalf("redistest: master %s of shard %d has no running replica", old.Addr(), i)
	}
	withNode(replica.Addr(), func(rdb *redis.Client) {
		if err := rdb.Do(context.Background(), "CLUSTER", "FAILOVER").Err(); err != nil {
			c.tb.Fatalf("redistest: CLUSTER FAILOVER on %s: %v", replica.Addr(), err)
		}
	})
	waitFor(c.tb, clusterWait, "manual cluster failover", func() (bool, string) {
		if m := c.masterOfSlot(slot); m != replica {
			return false, fmt.Sprintf("slot %d still served by %s", slot, m.Addr())
		}
		return c.healthy()
	})
	return replica
}

// WaitHealthy waits until every running node reports cluster_state:ok, all
// of them agree on which running node serves each slot, and every running
// replica's link to its master is up.
func (c *Cluster) WaitHealthy() {
	c.tb.Helper()
	waitFor(c.tb, clusterWait, "redis cluster healthy", c.healthy)
}

func (c *Cluster) healthy() (bool, string) {
	var ref map[int]string
	for _, n := range c.nodes {
		if !n.Running() {
			continue
		}
		addr := n.Addr()
		var (
			info string
			role string
			err  error
		)
		withNode(addr, func(rdb *redis.Client) {
			ctx := context.Background()
			if info, err = rdb.ClusterInfo(ctx).Result(); err != nil {
				return
			}
			role, err = rdb.Info(ctx, "replication").Result()
		})
		if err != nil {
			return false, fmt.Sprintf("%s: %v", addr, err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return false, addr + " cluster_state is not ok"
		}
		if strings.Contains(role, "role:slave") && !strings.Contains(role, "master_link_status:up") {
			return false, addr + " replica not in sync with its master"
		}
		m, err := slotMasters(addr)
		if err != nil {
			return false, fmt.Sprintf("%s: %v", addr, err)
		}
		if len(m) != 16384 {
			return false, fmt.Sprintf("%s knows a master for %d slots, want 16384", addr, len(m))
		}
		for slot, a := range m {
			if s := c.byAddr(a); s == nil || !s.Running() {
				return false, fmt.Sprintf("%s: slot %d served by %s, which is down", addr, slot, a)
			}
		}
		if ref == nil {
			ref = m
			continue
		}
		for slot, a := range m {
			if ref[slot] != a {
				return false, fmt.Sprintf("nodes disagree on slot %d: %s or %s", slot, ref[slot], a)
			}
		}
	}
	return true, ""
}

// slotMasters returns the master address of every slot as node addr sees it.
func slotMasters(addr string) (map[int]string, error) {
	var (
		slots []redis.ClusterSlot
		err   error
	)
	withNode(addr, func(rdb *redis.Client) {
		//lint:ignore SA1019 CLUSTER SLOTS still answers on Redis 7 and gives the slot ranges directly.
		slots, err = rdb.ClusterSlots(context.Background()).Result()
	})
	if err != nil {
		return nil, err
	}
	m := make(map[int]string, 16384)
	for _, s := range slots {
		if len(s.Nodes) == 0 {
			continue
		}
		for slot := s.Start; slot <= s.End; slot++ {
			m[slot] = s.Nodes[0].Addr
		}
	}
	return m, nil
}

// masterAddrOf returns the host:port of the master that node addr
// replicates, or "" when it is a master or unreachable.
func masterAddrOf(addr string) string {
	var info string
	withNode(addr, func(rdb *redis.Client) {
		info, _ = rdb.Info(context.Background(), "replication").Result()
	})
	host, port := infoField(info, "master_host"), infoField(info, "master_port")
	if host == "" || port == "" {
		return ""
	}
	return host + ":" + port
}

// infoField returns the value of field in an INFO reply.
func infoField(info, field string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// withNode runs fn with a short-lived plain client of addr.
func withNode(addr string, fn func(*redis.Client)) {
	rdb := redis.NewClient(nodeOptions(addr))
	defer rdb.Close()
	fn(rdb)
}

// nodeOptions are the options of the helpers' short-lived clients.
func nodeOptions(addr string) *redis.Options {
	return &redis.Options{
		Addr:         addr,
		DialTimeout:  200 * time.Millisecond,
		ReadTimeout:  500 * time.Millisecond,
		WriteTimeout: 500 * time.Millisecond,
		MaxRetries:   -1,
		PoolSize:     1,
		// One dial attempt: a dead node must not cost seconds.
		DialerRetries:      1,
		DialerRetryTimeout: 10 * time.Millisecond,
	}
}

// waitFor polls cond every 50ms until it holds, failing tb with the last
// reason after d.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redistest: %s: not reached after %s: %s", what, d, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
