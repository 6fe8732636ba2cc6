package server

import (
	"crypto/x509"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/berthnet/berth/xds/pki"
)

// Reasons a connection is refused or closed by the server, the values of the
// refused_connections_total and closed_connections_total metrics' reason label.
const (
	refusedGroupLimit = "group_limit"
	closedCertExpired = "certificate_expired"
	closedCARotated   = "ca_rotated"
	// groupNone counts the connections whose verified certificate names no group.
	groupNone = ""
)

// conns are the open, authenticated connections: counted per node group, and closed
// when their client certificate (or a CA of its chain) expires, or when the CA that
// verified it is no longer trusted.
type conns struct {
	s        *Server
	maxGroup int

	mu      sync.Mutex
	byGroup map[string]int
	open    map[*conn]struct{}
}

func newConns(s *Server, maxGroup int) *conns {
	return &conns{s: s, maxGroup: maxGroup, byGroup: map[string]int{}, open: map[*conn]struct{}{}}
}

// conn is one connection after its TLS handshake: the gRPC transport closes it when it
// ends, and the server closes it to end it early.
type conn struct {
	net.Conn
	c      *conns
	group  string
	chain  []*x509.Certificate // the peer's certificates as sent: leaf first
	expiry *time.Timer
	once   sync.Once
}

// Close ends the connection and forgets it; safe to call more than once.
func (c *conn) Close() error {
	c.once.Do(func() {
		c.c.mu.Lock()
		c.expiry.Stop() // set under the lock, by admit
		delete(c.c.open, c)
		if c.c.byGroup[c.group]--; c.c.byGroup[c.group] <= 0 {
			delete(c.c.byGroup, c.group)
		}
		c.c.mu.Unlock()
		c.c.s.metrics.conns.Dec()
	})
	return c.Conn.Close()
}

// closeFor ends a connection for reason, counted and logged.
func (c *conn) closeFor(reason, msg string) {
	c.c.s.metrics.closed.WithLabelValues(reason).Inc()
	c.c.s.log.Info("xDS connection closed", "reason", reason, "group", c.group, "remote", c.RemoteAddr().String(), "error", msg)
	_ = c.Close()
}

// admit counts a connection that passed its TLS handshake, or refuses it when its
// group has as many as allowed. It arms the close at the chain's earliest expiry.
func (cs *conns) admit(raw net.Conn, info credentials.TLSInfo) (*conn, error) {
	chain := info.State.PeerCertificates
	if len(chain) == 0 {
		return nil, fmt.Errorf("connection from %s: no client certificate", raw.RemoteAddr())
	}
	group, err := pki.GroupFromCert(chain[0])
	if err != nil {
		// Refused with a clear status at its first stream (peerGroup); counted here as
		// the group of certificates that name none, so they too are bounded.
		group = groupNone
	}
	cs.mu.Lock()
	// Checked again under the lock that recheck holds: a handshake verified by a CA that
	// SetCredentials dropped meanwhile is refused here, or closed by recheck.
	if err := verifyClient(chain, cs.s.creds.Load().ClientCAs, time.Now()); err != nil {
		cs.mu.Unlock()
		cs.s.metrics.refusedConns.WithLabelValues(closedCARotated).Inc()
		return nil, fmt.Errorf("xDS connection from %s refused: the CAs now trusted do not verify its client certificate: %w", raw.RemoteAddr(), err)
	}
	if n := cs.byGroup[group]; n >= cs.maxGroup {
		cs.mu.Unlock()
		cs.s.metrics.refusedConns.WithLabelValues(refusedGroupLimit).Inc()
		msg := fmt.Sprintf("group %q has %d open connections, the limit (--xds-max-connections-per-group)", group, n)
		cs.s.log.Info("xDS connection refused", "reason", refusedGroupLimit, "group", group, "remote", raw.RemoteAddr().String(), "error", msg)
		return nil, fmt.Errorf("xDS connection from %s refused: %s", raw.RemoteAddr(), msg)
	}
	c := &conn{Conn: raw, c: cs, group: group, chain: chain}
	cs.byGroup[group]++
	cs.open[c] = struct{}{}
	// Armed under the lock so that Close, which takes it, always finds the timer.
	c.expiry = time.AfterFunc(time.Until(chainExpiry(info.State.VerifiedChains)), func() {
		c.closeFor(closedCertExpired, "the client certificate or its CA expired")
	})
	cs.mu.Unlock()
	cs.s.metrics.conns.Inc()
	return c, nil
}

// chainExpiry is when the first verified chain stops being valid: its earliest NotAfter.
func chainExpiry(chains [][]*x509.Certificate) time.Time {
	var t time.Time
	if len(chains) == 0 {
		return t
	}
	for _, cert := range chains[0] {
		if t.IsZero() || cert.NotAfter.Before(t) {
			t = cert.NotAfter
		}
	}
	return t
}

// recheck closes every connection whose client certificate the CAs in pool no longer
// verify at now: after a CA rotation, those the old CA alone had let in.
func (cs *conns) recheck(pool *x509.CertPool, now time.Time) {
	cs.mu.Lock()
	var stale []*conn
	for c := range cs.open {
		if err := verifyClient(c.chain, pool, now); err != nil {
			stale = append(stale, c)
		}
	}
	cs.mu.Unlock()
	for _, c := range stale {
		c.closeFor(closedCARotated, "its client certificate is not verified by the CAs now trusted")
	}
}

// verifyClient verifies a client certificate chain as crypto/tls does for
// RequireAndVerifyClientCert.
func verifyClient(chain []*x509.Certificate, roots *x509.CertPool, now time.Time) error {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return err
}

// limitedCreds are the server's TLS credentials with every connection counted by conns
// once its handshake is done.
type limitedCreds struct {
	credentials.TransportCredentials
	conns *conns
}

func (l limitedCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	tc, auth, err := l.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return nil, nil, err
	}
	info, ok := auth.(credentials.TLSInfo)
	if !ok {
		_ = tc.Close()
		return nil, nil, fmt.Errorf("connection from %s: not TLS", raw.RemoteAddr())
	}
	c, err := l.conns.admit(tc, info)
	if err != nil {
		_ = tc.Close()
		return nil, nil, err
	}
	return c, auth, nil
}

func (l limitedCreds) Clone() credentials.TransportCredentials {
	return limitedCreds{TransportCredentials: l.TransportCredentials.Clone(), conns: l.conns}
}
