package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"strings"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	sotw "github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestGroupsIsolated serves two groups and checks that each Envoy gets only its own
// group's resources, secrets included, and that a certificate for one group cannot be
// used to ask for another.
func TestGroupsIsolated(t *testing.T) {
	e := newEnv(t)
	a := config{prefix: "a", backends: 2, endpointIP: 1}
	b := config{prefix: "b", backends: 3, endpointIP: 2}
	if err := e.srv.Set(context.Background(), groupA, "a1", a.all(t)); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Set(context.Background(), groupB, "b1", b.all(t)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		group, prefix string
	}{{groupA, "a-"}, {groupB, "b-"}} {
		for _, typeURL := range []string{resource.SecretType, resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType} {
			c, _ := connectSotw(t, e, tc.group, "envoy-"+tc.prefix, tc.group, typeURL)
			resp := fetch(t, c)
			got := names(t, resp)
			if len(got) == 0 {
				t.Errorf("%s %s: nothing received", tc.group, typeURL)
			}
			for _, n := range got {
				if !strings.HasPrefix(n, tc.prefix) {
					t.Errorf("%s received %s %q of another group", tc.group, typeURL, n)
				}
			}
		}
	}

	// A's certificate, asking as B: refused before anything is sent.
	c, rec := connectSotw(t, e, groupA, "intruder", groupB, resource.SecretType)
	_, err := within(t, "refused fetch", c.Fetch)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), groupA) || !strings.Contains(err.Error(), groupB) {
		t.Errorf("asking for B with A's certificate: %v, want PermissionDenied naming both groups", err)
	}
	if r := rec.last(); r != nil {
		t.Errorf("refused stream received %s", r.GetTypeUrl())
	}
	// The same over delta.
	conn, _ := e.dial(groupA)
	ds, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ds.Send(&discovery.DeltaDiscoveryRequest{Node: node("intruder", groupB), TypeUrl: resource.SecretType}); err != nil {
		t.Fatal(err)
	}
	if _, err := within(t, "refused delta", ds.Recv); status.Code(err) != codes.PermissionDenied {
		t.Errorf("delta asking for B with A's certificate: %v, want PermissionDenied", err)
	}
	// No node at all.
	c2, _ := connectSotw(t, e, groupA, "anonymous", "", resource.ClusterType)
	if _, err := within(t, "no cluster", c2.Fetch); status.Code(err) != codes.PermissionDenied {
		t.Errorf("no node cluster: %v, want PermissionDenied", err)
	}
	if got := testutil.ToFloat64(e.srv.metrics.refused.WithLabelValues(refusedGroup)); got != 3 {
		t.Errorf("refused streams %v, want 3", got)
	}
	if st := e.srv.Status(groupB); len(st.Nodes) != 1 || st.Nodes[0].ID != "envoy-b-" {
		t.Errorf("group B nodes %+v, want only envoy-b-", st.Nodes)
	}
}

// TestNodeCannotSwitchGroupMidStream checks that a node admitted for its own group cannot
// re-announce itself as another group on the same stream.
func TestNodeCannotSwitchGroupMidStream(t *testing.T) {
	e := newEnv(t)
	if err := e.srv.Set(context.Background(), groupA, "a1", config{prefix: "a", backends: 1}.all(t)); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Set(context.Background(), groupB, "b1", config{prefix: "b", backends: 1}.all(t)); err != nil {
		t.Fatal(err)
	}
	conn, _ := e.dial(groupA)
	str, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := str.Send(&discovery.DiscoveryRequest{Node: node("envoy-1", groupA), TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	r, err := within(t, "recv", str.Recv)
	if err != nil {
		t.Fatal(err)
	}
	if err := str.Send(&discovery.DiscoveryRequest{Node: node("envoy-1", groupB), TypeUrl: resource.SecretType, VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	if _, err := within(t, "recv", str.Recv); status.Code(err) != codes.PermissionDenied {
		t.Errorf("switching group mid-stream: %v, want PermissionDenied", err)
	}
	if got := testutil.ToFloat64(e.srv.metrics.refused.WithLabelValues(refusedNodeChanged)); got != 1 {
		t.Errorf("refused node_changed %v, want 1", got)
	}
}

// TestCertificateWithoutGroupRefused: a client certificate from the right CA that names no
// group gets no stream.
func TestCertificateWithoutGroupRefused(t *testing.T) {
	e := newEnv(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "no-group"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, e.ca.Cert, &key.PublicKey, e.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientTLS(t, e.ca, groupA)
	cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}
	conn, _ := dialTLS(t, e.addr, cfg)
	c := sotw.NewADSClient(e.ctx, node("envoy-1", groupA), resource.ClusterType)
	// The server refuses the stream as it opens, so the first request may find it ended
	// (io.EOF); the refusal's status is what Fetch receives either way.
	if err := c.InitConnect(conn); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if _, err := within(t, "fetch", c.Fetch); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "names no node group") {
		t.Errorf("certificate without a group: %v, want PermissionDenied saying it names no group", err)
	}
	if got := testutil.ToFloat64(e.srv.metrics.refused.WithLabelValues(refusedCertificate)); got != 1 {
		t.Errorf("refused certificate %v, want 1", got)
	}
}
