package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/berthnet/berth/xds/pki"
)

// Credentials are the server's side of mutual TLS.
type Credentials struct {
	// Certificate is the server's certificate and key (pki.KeyPair.TLSCertificate).
	Certificate tls.Certificate
	// ClientCAs verifies the Envoys' client certificates. During a CA rotation it holds the
	// old and the new CA (pki.Pool).
	ClientCAs *x509.CertPool
}

func (c *Credentials) check() error {
	if len(c.Certificate.Certificate) == 0 || c.Certificate.PrivateKey == nil {
		return errors.New("xds credentials: no server certificate")
	}
	if c.ClientCAs == nil {
		return errors.New("xds credentials: no client CA pool")
	}
	return nil
}

// SetCredentials replaces the server certificate and client CAs. New connections use them
// at once, without a restart. Established connections keep the session they negotiated,
// unless the new CAs do not verify their client certificate (the CA that did was
// dropped): those are closed, and their Envoys come back with a certificate the new CAs
// verify.
func (s *Server) SetCredentials(c Credentials) error {
	if err := c.check(); err != nil {
		return err
	}
	s.creds.Store(&c)
	s.conns.recheck(c.ClientCAs, time.Now())
	return nil
}

// tlsConfig is the listener's configuration: every handshake reads the current
// credentials, so SetCredentials takes effect for the next connection.
func (s *Server) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := s.creds.Load()
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{c.Certificate},
				ClientCAs:    c.ClientCAs,
				ClientAuth:   tls.RequireAndVerifyClientCert,
				NextProtos:   []string{"h2"},
			}, nil
		},
	}
}

// peerGroup returns the node group named by the verified client certificate of the
// stream's connection.
func peerGroup(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", errors.New("no peer information")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return "", fmt.Errorf("connection from %s is not TLS", p.Addr)
	}
	chains := info.State.VerifiedChains
	if len(chains) == 0 || len(chains[0]) == 0 {
		return "", fmt.Errorf("connection from %s has no verified client certificate", p.Addr)
	}
	group, err := pki.GroupFromCert(chains[0][0])
	if err != nil {
		return "", fmt.Errorf("connection from %s: %w", p.Addr, err)
	}
	return group, nil
}
