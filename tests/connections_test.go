package tests

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestSilentAndIdleConnectionsClosed reproduces the resource report: silent
// TCP connections (no HTTP/2 preface) and idle HTTP/2 connections were kept
// open forever. Now the handshake is bounded by --connection-timeout and an
// idle connection is closed after --max-connection-idle.
func TestSilentAndIdleConnectionsClosed(t *testing.T) {
	r := startReplica(t, "--connection-timeout", "500ms", "--max-connection-idle", "1s")

	// Silent TCP connections: the server closes each one.
	var silent []net.Conn
	for i := 0; i < 20; i++ {
		c, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	for i, c := range silent {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 1024)
		for {
			if _, err := c.Read(buf); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("silent connection %d still open after 10 s: the handshake is not bounded", i)
				}
				break // closed by the server
			}
		}
	}

	// An idle HTTP/2 connection: used once, then left alone.
	conn, err := grpc.NewClient(r.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := ctxT(t, 20*time.Second)
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for st := conn.GetState(); st == connectivity.Ready; st = conn.GetState() {
		wctx, cancel := context.WithDeadline(ctx, deadline)
		changed := conn.WaitForStateChange(wctx, st)
		cancel()
		if !changed {
			t.Fatalf("idle connection still READY after 15 s: --max-connection-idle 1s not enforced")
		}
	}
}
