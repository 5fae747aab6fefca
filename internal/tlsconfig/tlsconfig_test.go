package tlsconfig

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/topdeck/resilience/internal/tlstest"
)

// handshake runs one TLS handshake between srv and cli over a pipe and
// returns the client's error.
func handshake(t *testing.T, srv, cli *tls.Config) error {
	t.Helper()
	a, b := net.Pipe()
	done := make(chan error, 1)
	go func() {
		sc := tls.Server(a, srv)
		err := sc.Handshake()
		if err == nil {
			// TLS 1.3 clients finish before the server checks their
			// certificate: read once so a refusal reaches the client.
			_ = a.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			_, _ = sc.Read(make([]byte, 1))
		}
		_ = a.Close()
		done <- err
	}()
	cc := tls.Client(b, cli)
	err := cc.Handshake()
	if err == nil {
		// Surface a refusal the server sends after the client's handshake.
		_ = b.SetReadDeadline(time.Now().Add(time.Second))
		if _, rerr := cc.Read(make([]byte, 1)); rerr != nil && !isTimeoutOrEOF(rerr) {
			err = rerr
		}
	}
	_ = b.Close()
	if serr := <-done; err == nil && serr != nil {
		err = serr
	}
	return err
}

func isTimeoutOrEOF(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe)
}

func TestMutualTLS(t *testing.T) {
	f := tlstest.Generate(t)
	srv, err := Server(f.ServerCert, f.ServerKey, f.CA)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := Client(f.CA, f.ClientCert, f.ClientKey, "localhost", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, srv, ok); err != nil {
		t.Errorf("client with a certificate: %v", err)
	}
	noCert, _ := Client(f.CA, "", "", "localhost", false)
	if err := handshake(t, srv, noCert); err == nil {
		t.Errorf("client without a certificate: handshake succeeded, want it refused")
	}
	wrongName, _ := Client(f.CA, f.ClientCert, f.ClientKey, "example.com", false)
	if err := handshake(t, srv, wrongName); err == nil {
		t.Errorf("client verifying another name: handshake succeeded")
	}
}

func TestErrors(t *testing.T) {
	f := tlstest.Generate(t)
	if _, err := Server("/nonexistent.pem", f.ServerKey, ""); err == nil || !strings.Contains(err.Error(), "nonexistent") {
		t.Errorf("missing cert: got %v, want an error naming the file", err)
	}
	if _, err := Server(f.ServerCert, f.ServerKey, f.ServerKey); err == nil {
		t.Errorf("a key file as the client CA: got nil error")
	}
	if _, err := Client("", f.ClientCert, "", "", false); err == nil {
		t.Errorf("client cert without key: got nil error")
	}
}

// A rotated certificate is picked up without a restart; a broken file keeps
// the previous one.
func TestServerCertificateReload(t *testing.T) {
	a, b := tlstest.Generate(t), tlstest.Generate(t)
	kp := &keyPair{certFile: a.ServerCert, keyFile: a.ServerKey, every: time.Second}
	now := time.Now()
	first, err := kp.load(now)
	if err != nil {
		t.Fatal(err)
	}
	copyFile := func(from, to string) {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, 0o600); err != nil {
			t.Fatal(err)
		}
		later := now.Add(time.Hour)
		_ = os.Chtimes(to, later, later)
	}
	copyFile(b.ServerCert, a.ServerCert)
	copyFile(b.ServerKey, a.ServerKey)
	if got, _ := kp.load(now.Add(500 * time.Millisecond)); got != first {
		t.Errorf("reloaded within the check interval")
	}
	second, err := kp.load(now.Add(2 * time.Second))
	if err != nil || second == first {
		t.Fatalf("after rotation: got the same certificate (%v), want the new one", err)
	}
	if err := os.WriteFile(a.ServerCert, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(a.ServerCert, now.Add(2*time.Hour), now.Add(2*time.Hour))
	if got, err := kp.load(now.Add(4 * time.Second)); err != nil || got != second {
		t.Errorf("broken file: got %v, %v; want the previous certificate kept", got, err)
	}
}
