package tests

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/topdeck/resilience/internal/tlsconfig"
	"github.com/topdeck/resilience/internal/tlstest"
)

// With --tls-cert, --tls-key and --tls-client-ca the gRPC port speaks
// mutual TLS only: a client with a certificate from the CA gets answers,
// one without, or in plaintext, does not; the health probe and resilctl
// work over it.
func TestMutualTLS(t *testing.T) {
	f := tlstest.Generate(t)
	r := startReplica(t, "--tls-cert", f.ServerCert, "--tls-key", f.ServerKey, "--tls-client-ca", f.CA)

	check := func(creds credentials.TransportCredentials) error {
		t.Helper()
		conn, err := grpc.NewClient(r.addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = healthpb.NewHealthClient(conn).Check(ctxT(t, 5*time.Second), &healthpb.HealthCheckRequest{})
		return err
	}
	withCert, err := tlsconfig.Client(f.CA, f.ClientCert, f.ClientKey, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := check(credentials.NewTLS(withCert)); err != nil {
		t.Errorf("client with a certificate from the CA: %v", err)
	}
	noCert, _ := tlsconfig.Client(f.CA, "", "", "", false)
	if err := check(credentials.NewTLS(noCert)); err == nil {
		t.Errorf("client without a certificate: got an answer, want the handshake refused")
	}
	if err := check(insecure.NewCredentials()); err == nil {
		t.Errorf("plaintext client: got an answer from a TLS-only port")
	}

	probe := exec.Command(filepath.Join(binDir, "resilienced"), "--health-probe", "--listen", r.addr,
		"--tls-cert", f.ServerCert, "--tls-key", f.ServerKey, "--tls-client-ca", f.CA)
	if out, err := probe.CombinedOutput(); err != nil {
		t.Errorf("--health-probe over mutual TLS: %v\n%s", err, out)
	}
	ctl := exec.Command(filepath.Join(binDir, "resilctl"), "--addr", r.addr,
		"--tls-ca", f.CA, "--tls-cert", f.ClientCert, "--tls-key", f.ClientKey, "breakers", "get", "tls-test")
	ctl.Env = append(ctl.Environ(), "GORACE=atexit_sleep_ms=0")
	if out, err := ctl.CombinedOutput(); err != nil {
		t.Errorf("resilctl over mutual TLS: %v\n%s", err, out)
	}
	ctl = exec.Command(filepath.Join(binDir, "resilctl"), "--addr", r.addr, "--timeout", "2s", "breakers", "get", "tls-test")
	ctl.Env = append(ctl.Environ(), "GORACE=atexit_sleep_ms=0")
	if out, err := ctl.CombinedOutput(); err == nil {
		t.Errorf("resilctl in plaintext against a TLS port succeeded: %s", out)
	}
}

func TestTLSFlagsAreChecked(t *testing.T) {
	f := tlstest.Generate(t)
	for _, args := range [][]string{
		{"--tls-cert", f.ServerCert},         // no key
		{"--tls-client-ca", f.CA},            // no server certificate
		{"--tls-key", f.ServerKey, "--nope"}, // and a bad flag
	} {
		cmd := exec.Command(filepath.Join(binDir, "resilienced"), append([]string{"--listen", "127.0.0.1:0", "--metrics-listen", ""}, args...)...)
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("%v: started, want a usage error\n%s", args, out)
		}
	}
	cmd := exec.Command(filepath.Join(binDir, "resilienced"), "--listen", "127.0.0.1:0", "--metrics-listen", "",
		"--tls-cert", filepath.Join(t.TempDir(), "missing.pem"), "--tls-key", f.ServerKey)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("a missing certificate file: started, want an error\n%s", out)
	}
}
