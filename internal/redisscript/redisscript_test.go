package redisscript_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/topdeck/resilience/internal/redisscript"
	"github.com/topdeck/resilience/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// incr returns the key's value after adding ARGV[1].
var incr = redisscript.New(`return redis.call("INCRBY", KEYS[1], ARGV[1])`)

func TestIsNoScript(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{redis.ErrNoScript, true},
		{fmt.Errorf("list: %w", redis.ErrNoScript), true},
		{errors.New("NOSCRIPT but not from Redis"), false},
		{errors.New("ERR something else"), false},
		{redis.Nil, false},
	}
	for _, tt := range tests {
		if got := redisscript.IsNoScript(tt.err); got != tt.want {
			t.Errorf("IsNoScript(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestExec checks that a pipeline of EVALSHAs gets every reply, before and
// after the script cache is flushed (NOSCRIPT recovered with EVAL), on one
// node and on a 3-master Cluster, where the pipeline is split per node.
func TestExec(t *testing.T) {
	tests := []struct {
		name   string
		client func(t *testing.T) redis.UniversalClient
		flush  func(ctx context.Context, c redis.UniversalClient) error
	}{
		{"single", func(t *testing.T) redis.UniversalClient { return redistest.Start(t).Client() },
			func(ctx context.Context, c redis.UniversalClient) error { return c.ScriptFlush(ctx).Err() }},
		{"cluster", func(t *testing.T) redis.UniversalClient { return redistest.StartCluster(t, 3, 0).Client() },
			func(ctx context.Context, c redis.UniversalClient) error {
				return c.(*redis.ClusterClient).ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
					return m.ScriptFlush(ctx).Err()
				})
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			c := tt.client(t)
			const n = 32 // enough keys to land on every master
			for round := int64(1); round <= 3; round++ {
				if round == 3 {
					if err := tt.flush(ctx, c); err != nil {
						t.Fatalf("SCRIPT FLUSH: %v", err)
					}
				}
				cmds := make([]*redis.Cmd, n)
				for i := range cmds {
					cmds[i] = incr.Cmd(ctx, []string{fmt.Sprintf("k{%d}", i)}, i)
				}
				incr.Exec(ctx, c, c, cmds)
				for i, cmd := range cmds {
					got, err := cmd.Int64()
					if want := round * int64(i); err != nil || got != want {
						t.Fatalf("round %d, command %d: got %d, %v; want %d, nil", round, i, got, err, want)
					}
				}
			}
		})
	}
}

// TestExecMissingReply checks that a command without a reply holds the
// pipeline's error, not a nil reply.
func TestExecMissingReply(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	srv.Kill()
	ctx := context.Background()
	cmds := []*redis.Cmd{incr.Cmd(ctx, []string{"k"}, 1), incr.Cmd(ctx, []string{"k"}, 1)}
	incr.Exec(ctx, c, c, cmds)
	for i, cmd := range cmds {
		if v, err := cmd.Result(); err == nil {
			t.Errorf("command %d on a dead server: got %v, nil; want an error", i, v)
		}
	}
}
