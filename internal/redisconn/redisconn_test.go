package redisconn

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/topdeck/resilience/internal/redistest"
)

func TestOpenKinds(t *testing.T) {
	tests := []struct {
		url  string
		want Kind
	}{
		{"redis://127.0.0.1:6390/2", Single},
		{"rediss://user:pw@127.0.0.1:6390", Single},
		{"redis://127.0.0.1:7000?addr=127.0.0.1:7001&addr=127.0.0.1:7002", Cluster},
		{"redis://127.0.0.1:7000?cluster=true", Cluster},
		{"redis://127.0.0.1:26379?master_name=mymaster&addr=127.0.0.1:26380", Sentinel},
	}
	for _, tt := range tests {
		c, kind, err := Open(tt.url, Timeouts{})
		if err != nil {
			t.Errorf("Open(%q): %v", tt.url, err)
			continue
		}
		if kind != tt.want {
			t.Errorf("Open(%q): kind %q, want %q", tt.url, kind, tt.want)
		}
		_ = c.Close()
	}
}

func TestOpenErrors(t *testing.T) {
	for _, u := range []string{"", "http://x:1", "redis://[::1", "redis://h:1?master_name=m&bogus=1"} {
		if c, _, err := Open(u, Timeouts{}); err == nil {
			_ = c.Close()
			t.Errorf("Open(%q): got nil error, want one", u)
		} else if !strings.HasPrefix(err.Error(), "redisconn: ") {
			t.Errorf("Open(%q): error %q should start with the package name", u, err)
		}
	}
}

// A dead Redis must fail a call fast, not after go-redis's default dial
// retries (about a second). The bound here is generous for a loaded machine;
// the point is "not seconds".
func TestDeadRedisFailsFast(t *testing.T) {
	srv := redistest.Start(t)
	c, _, err := Open(srv.URL(), Timeouts{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("Ping a live server: %v", err)
	}
	srv.Kill()
	for i := 0; i < 3; i++ {
		start := time.Now()
		err := c.Ping(ctx).Err()
		if err == nil {
			t.Fatalf("Ping a dead server: got nil error")
		}
		if d := time.Since(start); d > 750*time.Millisecond {
			t.Errorf("Ping a dead server took %s, want well under a second", d)
		}
	}
	srv.Restart()
	redistest.WaitAnswering(t, c, 5*time.Second) // the client reconnects
	var _ redis.UniversalClient = c
}

// A cluster client must refresh its slot map often: go-redis otherwise keeps
// sending a dead master's slots to it for a minute after a failover (see
// tests/scale_test.go for the behaviour).
func TestClusterRefreshesSlots(t *testing.T) {
	c, _, err := Open("redis://127.0.0.1:7000?addr=127.0.0.1:7001", Timeouts{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cc, ok := c.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("Open: got %T, want *redis.ClusterClient", c)
	}
	if got := cc.Options().ClusterStateReloadInterval; got != ClusterStateReload {
		t.Errorf("ClusterStateReloadInterval: got %s, want %s", got, ClusterStateReload)
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"--redis-url=redis://user:s3cret@h:6379/0", "--redis-url=redis://user:REDACTED@h:6379/0"},
		{"rediss://:pw@h1:7000?addr=h2:7001", "rediss://:REDACTED@h1:7000?addr=h2:7001"},
		{"redis://h:6379?master_name=m&sentinel_password=x&addr=h2", "redis://h:6379?master_name=m&sentinel_password=REDACTED&addr=h2"},
		{"redis://h:6379/0", "redis://h:6379/0"},
		{"dial tcp 127.0.0.1:6379: connection refused", "dial tcp 127.0.0.1:6379: connection refused"},
	}
	for _, tt := range tests {
		if got := Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestProtocol: the service's clients and the test clients of redistest
// speak the same RESP version, so that the store tests run as the service
// does.
func TestProtocol(t *testing.T) {
	if Protocol != redistest.Protocol {
		t.Fatalf("redisconn.Protocol = %d, redistest.Protocol = %d: the tests would not speak what the service speaks", Protocol, redistest.Protocol)
	}
}
