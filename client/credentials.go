package client

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"

	"google.golang.org/grpc/credentials"
)

// BearerToken returns per-RPC credentials that send token as
// "authorization: Bearer <token>" with every call, for a service with an
// auth section (see docs/security.md). Dial with them:
//
//	conn, err := grpc.NewClient(addr,
//		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)),
//		grpc.WithPerRPCCredentials(client.BearerToken(os.Getenv("RESILIENCE_TOKEN"))))
//
// The token is only sent over TLS, or in plaintext to a loopback address
// (a local sidecar or a test server): anything else fails the call rather
// than send the token where it could be read. They are safe for concurrent
// use.
func BearerToken(token string) credentials.PerRPCCredentials {
	return bearer{token: token}
}

type bearer struct{ token string }

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b bearer) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	ri, _ := credentials.RequestInfoFromContext(ctx)
	if err := credentials.CheckSecurityLevel(ri.AuthInfo, credentials.PrivacyAndIntegrity); err != nil && !loopbackURI(uri) {
		return nil, errInsecureToken
	}
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials. It is
// false so that a plaintext loopback connection can carry the token;
// GetRequestMetadata refuses every other plaintext connection.
func (b bearer) RequireTransportSecurity() bool { return false }

// loopbackURI reports whether the call's audience URI (gRPC passes
// "https://<authority>/<service>") names a loopback host.
func loopbackURI(uri []string) bool {
	if len(uri) == 0 {
		return false
	}
	u, err := url.Parse(uri[0])
	if err != nil {
		return false
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// errInsecureToken is the error of a call that would send a token in
// plaintext beyond loopback.
var errInsecureToken = errors.New("client: refusing to send a bearer token over a plaintext connection to a non-loopback address; use TLS")
