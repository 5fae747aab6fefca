// Package tlsconfig builds the TLS configurations of resilienced (server,
// optionally requiring client certificates) and of its clients (resilctl,
// the health probe) from PEM files.
//
// The server's certificate is read again when its files change, so that a
// rotated certificate (cert-manager, a renewed Secret) is used without a
// restart.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Server returns a server configuration presenting the key pair in certFile
// and keyFile. With clientCAFile set, clients must present a certificate
// signed by one of its CAs (mutual TLS). The files are checked now, so that
// a bad path or key fails start-up.
func Server(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	kp := &keyPair{certFile: certFile, keyFile: keyFile, every: time.Second}
	if _, err := kp.load(time.Now()); err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return kp.load(time.Now())
		},
	}
	if clientCAFile != "" {
		pool, err := certPool(clientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Client returns a client configuration: the server is verified against the
// CAs in caFile (the system's when empty) under serverName (the dialled
// host when empty); certFile and keyFile, when set, are presented for mutual
// TLS. insecureSkipVerify skips verifying the server: for a local health
// probe only.
func Client(caFile, certFile, keyFile, serverName string, insecureSkipVerify bool) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName, InsecureSkipVerify: insecureSkipVerify}
	if caFile != "" {
		pool, err := certPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	switch {
	case certFile != "" && keyFile != "":
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("tlsconfig: client key pair: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case certFile != "" || keyFile != "":
		return nil, errors.New("tlsconfig: a client certificate needs both the certificate and the key file")
	}
	return cfg, nil
}

func certPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tlsconfig: %s: no PEM certificate found", file)
	}
	return pool, nil
}

// keyPair is a certificate read from files and read again, at most every
// `every`, when the files' modification times change. A file that does not
// load keeps the previous certificate in use.
type keyPair struct {
	certFile, keyFile string
	every             time.Duration

	mu      sync.Mutex // protects the fields below
	cert    *tls.Certificate
	checked time.Time
	modCert time.Time
	modKey  time.Time
}

// load returns the current certificate, reading the files again when they
// changed.
func (k *keyPair) load(now time.Time) (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cert != nil && now.Sub(k.checked) < k.every {
		return k.cert, nil
	}
	k.checked = now
	mc, errc := modTime(k.certFile)
	mk, errk := modTime(k.keyFile)
	if k.cert != nil && (errc != nil || errk != nil || (mc.Equal(k.modCert) && mk.Equal(k.modKey))) {
		return k.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		if k.cert != nil {
			return k.cert, nil // half-written rotation: keep the old one
		}
		return nil, fmt.Errorf("tlsconfig: server key pair: %w", err)
	}
	k.cert, k.modCert, k.modKey = &cert, mc, mk
	return k.cert, nil
}

func modTime(file string) (time.Time, error) {
	st, err := os.Stat(file)
	if err != nil {
		return time.Time{}, err
	}
	return st.ModTime(), nil
}
