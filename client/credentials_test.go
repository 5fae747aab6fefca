package client_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/topdeck/resilience/client"
	"github.com/topdeck/resilience/config"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/internal/testkit"
	"github.com/topdeck/resilience/server"
)

// authService serves a configuration whose one principal has token on a
// loopback TCP port, and returns its address.
func authService(t *testing.T, token string) string {
	t.Helper()
	sum := sha256.Sum256([]byte(token))
	cfg, err := config.Parse("auth.yaml", []byte("auth:\n  principals:\n    - {name: app, tenant: app, roles: [caller], token_sha256: "+hex.EncodeToString(sum[:])+"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	build := func(c *config.Config) (*server.Backends, error) {
		st, err := stores(c, nil)
		if err != nil {
			return nil, err
		}
		return server.NewBackends(c, st, log)
	}
	b, err := build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tenants := server.NewTenants(cfg, build)
	srv := server.New(cfg, b, server.WithLogger(log), server.WithTenants(tenants))
	t.Cleanup(func() {
		_ = tenants.Close()
		_ = b.Close()
	})
	lis := testkit.Listen(t)
	testkit.Serve(t, lis, srv.Serve, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return lis.Addr().String()
}

func TestBearerToken(t *testing.T) {
	addr := authService(t, "s3cret")
	dial := func(target string, opts ...grpc.DialOption) resiliencev1.ResilienceServiceClient {
		t.Helper()
		return resiliencev1.NewResilienceServiceClient(testkit.Dial(t, target, opts...))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := &resiliencev1.BreakerStateRequest{Breaker: "x"}

	if _, err := dial(addr, grpc.WithPerRPCCredentials(client.BearerToken("s3cret"))).BreakerState(ctx, req); err != nil {
		t.Errorf("with the token over loopback: %v", err)
	}
	if _, err := dial(addr).BreakerState(ctx, req); status.Code(err) != codes.Unauthenticated {
		t.Errorf("without a token: got %v, want UNAUTHENTICATED", err)
	}
	if _, err := dial(addr, grpc.WithPerRPCCredentials(client.BearerToken("wrong"))).BreakerState(ctx, req); status.Code(err) != codes.Unauthenticated {
		t.Errorf("with a wrong token: got %v, want UNAUTHENTICATED", err)
	}
	// Plaintext to a name that is not loopback: the token is not sent.
	remote := dial("passthrough:///resilience.example:50051",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		}),
		grpc.WithPerRPCCredentials(client.BearerToken("s3cret")))
	if _, err := remote.BreakerState(ctx, req); err == nil || !strings.Contains(err.Error(), "plaintext") {
		t.Errorf("token over plaintext to a non-loopback name: got %v, want a refusal to send it", err)
	}
}

func ExampleBearerToken() {
	// The token comes from the environment (a Kubernetes Secret), never
	// from code or configuration files.
	conn, err := grpc.NewClient("127.0.0.1:50051",
		grpc.WithTransportCredentials(insecure.NewCredentials()), // use TLS beyond loopback
		grpc.WithPerRPCCredentials(client.BearerToken(os.Getenv("RESILIENCE_TOKEN"))))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	_ = client.New(conn)
}
