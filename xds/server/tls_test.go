package server

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	sotw "github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// handshake dials the server with raw TLS and returns the serial of the certificate the
// server presented, or the handshake error.
func handshake(t *testing.T, addr string, cfg *tls.Config) (string, error) {
	t.Helper()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: wait}, Config: cfg}
	cfg.NextProtos = []string{"h2"}
	conn, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	tc := conn.(*tls.Conn)
	// TLS 1.3 reports a refused client certificate on the first read; an accepted one
	// reads the server's HTTP/2 settings frame.
	_ = tc.SetReadDeadline(time.Now().Add(wait))
	if _, err := tc.Read(make([]byte, 1)); err != nil {
		return "", err
	}
	return tc.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

// TestCredentialRotation rotates the CA in the way the controller does: first trust both
// CAs and serve a certificate from the new one, then drop the old CA. No restart; a
// stream established with a certificate of the new CA carries on, and one established
// with the old CA's is closed once that CA is dropped.
func TestCredentialRotation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cfg := config{prefix: "a", backends: 1, endpointIP: 1}
	if err := e.srv.Set(ctx, groupA, "v1", cfg.all(t)); err != nil {
		t.Fatal(err)
	}
	old := e.ca
	established, _ := connectSotw(t, e, groupA, "envoy-old", groupA, resource.EndpointType)
	fetch(t, established)
	if err := established.Ack(); err != nil {
		t.Fatal(err)
	}

	if _, err := handshake(t, e.addr, clientTLS(t, old, groupA)); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	next := newCA(t)
	// Step 1: serve from the new CA, trust clients of both.
	overlap := serverCreds(t, next, old, next)
	if err := e.srv.SetCredentials(overlap); err != nil {
		t.Fatal(err)
	}
	wantSerial := overlap.Certificate.Leaf.SerialNumber.String()
	if serial, err := handshake(t, e.addr, clientTLS(t, old, groupA, old, next)); err != nil || serial != wantSerial {
		t.Errorf("old client trusting both CAs: serial %s, %v; want the new certificate %s", serial, err, wantSerial)
	}
	if _, err := handshake(t, e.addr, clientTLS(t, old, groupA, old)); err == nil {
		t.Error("a client trusting only the old CA accepted the new server certificate")
	}
	if serial, err := handshake(t, e.addr, clientTLS(t, next, groupA, next)); err != nil || serial != wantSerial {
		t.Errorf("new client: %s, %v", serial, err)
	}
	// An Envoy reissued a certificate of the new CA during the overlap.
	conn, rec := dialTLS(t, e.addr, clientTLS(t, next, groupA, next))
	renewed := sotw.NewADSClient(e.ctx, node("envoy-renewed", groupA), resource.EndpointType)
	if err := renewed.InitConnect(conn); err != nil {
		t.Fatal(err)
	}
	fetch(t, renewed)
	if err := renewed.Ack(); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(e.srv.metrics.closed.WithLabelValues(closedCARotated)); got != 0 {
		t.Errorf("connections closed while both CAs are trusted: %v, want 0", got)
	}

	// Step 2: the old CA is no longer trusted; its client certificates are refused, and
	// the connection it verified before is closed.
	if err := e.srv.SetCredentials(serverCreds(t, next)); err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(t, e.addr, clientTLS(t, old, groupA, old, next)); err == nil {
		t.Error("a client certificate from the dropped CA was accepted")
	}
	if _, err := within(t, "the old CA's stream ends", established.Fetch); status.Code(err) != codes.Unavailable {
		t.Errorf("stream of a certificate from the dropped CA: %v, want it ended (Unavailable)", err)
	}
	if got := testutil.ToFloat64(e.srv.metrics.closed.WithLabelValues(closedCARotated)); got != 1 {
		t.Errorf("connections closed for the rotation: %v, want 1", got)
	}
	// A new Envoy with a new certificate gets its configuration over gRPC.
	conn2, _ := dialTLS(t, e.addr, clientTLS(t, next, groupA, next))
	c := sotw.NewADSClient(e.ctx, node("envoy-new", groupA), resource.EndpointType)
	if err := c.InitConnect(conn2); err != nil {
		t.Fatal(err)
	}
	if got := names(t, fetch(t, c)); len(got) != 1 {
		t.Errorf("new Envoy after rotation got %v", got)
	}
	// The stream of the new CA's certificate, established before the old CA was dropped,
	// still receives updates.
	cfg.endpointIP = 2
	if err := e.srv.SetTypes(ctx, groupA, "v2", map[resource.Type][]types.Resource{resource.EndpointType: cfg.endpoints()}); err != nil {
		t.Fatal(err)
	}
	fetch(t, renewed)
	if v := rec.last().GetVersionInfo(); v != "v2" {
		t.Errorf("renewed stream got %q, want v2", v)
	}
	if err := e.srv.SetCredentials(Credentials{}); err == nil {
		t.Error("empty credentials accepted")
	}
}
