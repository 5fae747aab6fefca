package client_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/topdeck/resilience/client"
)

func BenchmarkCheck(b *testing.B) {
	s := mustService(b, "", nil)
	c := client.New(s.conn)
	ctx := context.Background()
	lim := client.RateLimit{MaxCalls: 1_000_000_000, Window: time.Second}
	for b.Loop() {
		if _, err := c.Check(ctx, "bench", lim); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDo(b *testing.B) {
	s := mustService(b, "", nil)
	c := client.New(s.conn)
	ctx := context.Background()
	fn := func(context.Context) error { return nil }
	for b.Loop() {
		if err := c.Do(ctx, "bench", fn); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckServiceDown measures local decisions while the service is
// unreachable (within the retry interval).
func BenchmarkCheckServiceDown(b *testing.B) {
	conn, err := grpc.NewClient("passthrough:///127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	c := client.New(conn, client.WithServiceRetryInterval(time.Hour))
	ctx := context.Background()
	lim := client.RateLimit{MaxCalls: 1_000_000_000, Window: time.Second}
	for b.Loop() {
		if d, err := c.Check(ctx, "bench", lim); err != nil || !d.Local {
			b.Fatal(d, err)
		}
	}
}
