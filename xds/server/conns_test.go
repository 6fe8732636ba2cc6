package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/berthnet/berth/xds/pki"
)

// admitted opens an ADS stream on conn for a node of group and waits for its first
// response, so the server has admitted it.
func admitted(t *testing.T, e *env, conn *grpc.ClientConn, id, group string) discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient {
	t.Helper()
	str, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := str.Send(&discovery.DiscoveryRequest{Node: node(id, group), TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := within(t, id+" admitted", str.Recv); err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	return str
}

// TestStreamsPerConnectionBounded speaks HTTP/2 itself, as a client that ignores the
// server's SETTINGS would: the server advertises its bound, and resets a stream over it.
func TestStreamsPerConnectionBounded(t *testing.T) {
	e := newEnvLimits(t, Limits{MaxStreamsPerConn: 2})
	cfg := clientTLS(t, e.ca, groupA)
	cfg.NextProtos = []string{"h2"}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: wait}, Config: cfg}
	c, err := d.DialContext(context.Background(), "tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for the server's SETTINGS: %v", err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			if v, ok := sf.Value(http2.SettingMaxConcurrentStreams); !ok || v != 2 {
				t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS %d (sent: %v), want 2", v, ok)
			}
			break
		}
	}
	if err := fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, id := range []uint32{1, 3, 5} {
		hb.Reset()
		for _, f := range []hpack.HeaderField{
			{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "https"},
			{Name: ":path", Value: "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"},
			{Name: ":authority", Value: serverName}, {Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
		} {
			if err := enc.WriteField(f); err != nil {
				t.Fatal(err)
			}
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for the third stream's reset: %v", err)
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok {
			if rst.StreamID != 5 || rst.ErrCode != http2.ErrCodeRefusedStream {
				t.Errorf("stream %d reset with %s, want stream 5 with REFUSED_STREAM", rst.StreamID, rst.ErrCode)
			}
			return
		}
	}
}

// TestConnectionsPerGroupBounded: a group's connections over the bound are closed after
// their handshake and counted; other groups are not affected; a slot freed is taken.
func TestConnectionsPerGroupBounded(t *testing.T) {
	e := newEnvLimits(t, Limits{MaxConnsPerGroup: 2})
	for _, g := range []string{groupA, groupB} {
		if err := e.srv.Set(context.Background(), g, "v1", config{prefix: "a", backends: 1}.all(t)); err != nil {
			t.Fatal(err)
		}
	}
	a1, _ := e.dial(groupA)
	admitted(t, e, a1, "envoy-a1", groupA)
	a2, _ := e.dial(groupA)
	admitted(t, e, a2, "envoy-a2", groupA)

	a3, _ := e.dial(groupA)
	str, err := discovery.NewAggregatedDiscoveryServiceClient(a3).StreamAggregatedResources(e.ctx)
	if err == nil {
		if err = str.Send(&discovery.DiscoveryRequest{Node: node("envoy-a3", groupA), TypeUrl: resource.ClusterType}); err == nil {
			_, err = within(t, "third connection", str.Recv)
		}
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("third connection of group A: %v, want Unavailable", err)
	}
	if got := testutil.ToFloat64(e.srv.metrics.refusedConns.WithLabelValues(refusedGroupLimit)); got != 1 {
		t.Errorf("refused connections (group_limit) %v, want 1", got)
	}
	b1, _ := e.dial(groupB)
	admitted(t, e, b1, "envoy-b1", groupB)

	// A's first Envoy goes away; its slot is free once the server saw the connection end.
	_ = a1.Close()
	eventually(t, "the server forgets the closed connection", func() bool {
		return testutil.ToFloat64(e.srv.metrics.conns) == 2
	})
	a4, _ := e.dial(groupA)
	admitted(t, e, a4, "envoy-a4", groupA)
}

// shortLifetime is the shortest xds/pki issues; expiresIn backdates the issue so that a
// certificate of that lifetime expires in d: a few seconds leave time to connect.
const shortLifetime = 6 * time.Minute

func expiresIn(d time.Duration) time.Time { return time.Now().Add(d - shortLifetime) }

// TestConnectionEndsWhenCertificateExpires: a connection whose client certificate
// expires is closed then, stream and all; the Envoy must come back with its renewed one.
func TestConnectionEndsWhenCertificateExpires(t *testing.T) {
	e := newEnv(t)
	if err := e.srv.Set(context.Background(), groupA, "v1", config{prefix: "a", backends: 1}.all(t)); err != nil {
		t.Fatal(err)
	}
	kp, err := e.ca.IssueClient(groupA, expiresIn(3*time.Second), shortLifetime)
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientTLS(t, e.ca, groupA)
	cfg.Certificates = []tls.Certificate{kp.TLSCertificate()}
	conn, _ := dialTLS(t, e.addr, cfg)
	str := admitted(t, e, conn, "envoy-short", groupA)
	if _, err := within(t, "the stream ends at the certificate's expiry", str.Recv); status.Code(err) != codes.Unavailable {
		t.Errorf("stream past its certificate's expiry: %v, want it ended (Unavailable)", err)
	}
	if got := testutil.ToFloat64(e.srv.metrics.closed.WithLabelValues(closedCertExpired)); got != 1 {
		t.Errorf("closed connections (certificate_expired) %v, want 1", got)
	}
	// An Envoy whose certificate is valid is not touched.
	long, _ := e.dial(groupA)
	admitted(t, e, long, "envoy-long", groupA)
	if got := testutil.ToFloat64(e.srv.metrics.conns); got != 1 {
		t.Errorf("open connections %v, want 1", got)
	}
}

// TestConnectionEndsWhenItsCAExpires: the chain's earliest expiry counts, a CA's too.
func TestConnectionEndsWhenItsCAExpires(t *testing.T) {
	e := newEnv(t)
	short, err := pki.NewCA("short-lived-ca", expiresIn(3*time.Second), shortLifetime)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.SetCredentials(serverCreds(t, e.ca, e.ca, short)); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Set(context.Background(), groupA, "v1", config{prefix: "a", backends: 1}.all(t)); err != nil {
		t.Fatal(err)
	}
	// Its client certificate is for a day, capped at the CA's own expiry.
	cfg := clientTLS(t, short, groupA, e.ca)
	conn, _ := dialTLS(t, e.addr, cfg)
	str := admitted(t, e, conn, "envoy-short-ca", groupA)
	if _, err := within(t, "the stream ends at the CA's expiry", str.Recv); status.Code(err) != codes.Unavailable {
		t.Errorf("stream past its CA's expiry: %v, want it ended (Unavailable)", err)
	}
	if got := testutil.ToFloat64(e.srv.metrics.closed.WithLabelValues(closedCertExpired)); got != 1 {
		t.Errorf("closed connections (certificate_expired) %v, want 1", got)
	}
}

// TestConnectionMaxAge: a connection ends at its maximum age plus grace, even with a
// stream open; the client reconnects on its own (handshaking again).
func TestConnectionMaxAge(t *testing.T) {
	e := newEnvLimits(t, Limits{MaxConnAge: time.Second, MaxConnAgeGrace: time.Second})
	if err := e.srv.Set(context.Background(), groupA, "v1", config{prefix: "a", backends: 1}.all(t)); err != nil {
		t.Fatal(err)
	}
	conn, _ := e.dial(groupA)
	str := admitted(t, e, conn, "envoy-1", groupA)
	if _, err := within(t, "the stream ends at the connection's age", str.Recv); status.Code(err) != codes.Unavailable {
		t.Errorf("stream past its connection's age: %v, want it ended (Unavailable)", err)
	}
	admitted(t, e, conn, "envoy-1", groupA)
}

// TestHandshakeByDroppedCARefused: a handshake verified with the CAs of before a
// SetCredentials that dropped its CA, but counted after it (so recheck did not see it),
// is refused as it is counted. The TLS state is built by hand: the interleaving cannot be
// forced over a socket.
func TestHandshakeByDroppedCARefused(t *testing.T) {
	e := newEnv(t)
	old := e.ca
	stale, err := old.IssueClient(groupA, time.Now(), pki.DefaultLeafLifetime)
	if err != nil {
		t.Fatal(err)
	}
	next := newCA(t)
	fresh, err := next.IssueClient(groupA, time.Now(), pki.DefaultLeafLifetime)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.SetCredentials(serverCreds(t, next)); err != nil {
		t.Fatal(err)
	}
	verified := func(kp *pki.KeyPair, ca *pki.CA) credentials.TLSInfo {
		return credentials.TLSInfo{State: tls.ConnectionState{
			PeerCertificates: []*x509.Certificate{kp.Cert},
			VerifiedChains:   [][]*x509.Certificate{{kp.Cert, ca.Cert}},
		}}
	}
	a, b := net.Pipe()
	defer b.Close()
	if _, err := e.srv.conns.admit(a, verified(stale, old)); err == nil || !strings.Contains(err.Error(), "do not verify") {
		t.Errorf("a handshake verified by the dropped CA: %v, want refused", err)
	}
	if got := testutil.ToFloat64(e.srv.metrics.refusedConns.WithLabelValues(closedCARotated)); got != 1 {
		t.Errorf("refused connections (ca_rotated) %v, want 1", got)
	}
	c, d := net.Pipe()
	defer d.Close()
	admittedConn, err := e.srv.conns.admit(c, verified(fresh, next))
	if err != nil {
		t.Fatalf("a handshake verified by the CA trusted now: %v", err)
	}
	if got := testutil.ToFloat64(e.srv.metrics.conns); got != 1 {
		t.Errorf("open connections %v, want 1", got)
	}
	_ = admittedConn.Close()
	if got := testutil.ToFloat64(e.srv.metrics.conns); got != 0 {
		t.Errorf("open connections after Close %v, want 0", got)
	}
}
