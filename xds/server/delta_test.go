package server

import (
	"context"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
)

// deltaClient is a minimal incremental xDS client over the generated ADS stub, written
// independently of the server: it subscribes, ACKs and NACKs as Envoy does.
type deltaClient struct {
	t      testing.TB
	stream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	node   bool
	id     string
	group  string
}

func (e *env) delta(certGroup, nodeID, nodeGroup string) *deltaClient {
	e.t.Helper()
	conn, _ := e.dial(certGroup)
	s, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return &deltaClient{t: e.t, stream: s, id: nodeID, group: nodeGroup}
}

func (d *deltaClient) send(req *discovery.DeltaDiscoveryRequest) {
	d.t.Helper()
	if !d.node { // the node goes on the first request only, as Envoy does by default
		req.Node = node(d.id, d.group)
		d.node = true
	}
	if err := d.stream.Send(req); err != nil {
		d.t.Fatal(err)
	}
}

func (d *deltaClient) subscribe(typeURL string, names ...string) {
	d.t.Helper()
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: typeURL, ResourceNamesSubscribe: names})
}

func (d *deltaClient) recv() *discovery.DeltaDiscoveryResponse {
	d.t.Helper()
	r, err := within(d.t, "delta recv", d.stream.Recv)
	if err != nil {
		d.t.Fatal(err)
	}
	return r
}

func (d *deltaClient) ack(r *discovery.DeltaDiscoveryResponse) {
	d.t.Helper()
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()})
}

func (d *deltaClient) nack(r *discovery.DeltaDiscoveryResponse, msg string) {
	d.t.Helper()
	d.send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce(), ErrorDetail: &rpcstatus.Status{Code: 3, Message: msg}})
}

func deltaNames(r *discovery.DeltaDiscoveryResponse) []string {
	var out []string
	for _, res := range r.GetResources() {
		out = append(out, res.GetName())
	}
	return out
}

func TestDeltaFetchACKNACKAndEndpointOnlyPush(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cfg := config{prefix: "a", backends: 2, endpointIP: 1}
	if err := e.srv.Set(ctx, groupA, "v1", cfg.all(t)); err != nil {
		t.Fatal(err)
	}
	d := e.delta(groupA, "envoy-1", groupA)

	// Initial fetch, as Envoy does it: clusters (wildcard), then their endpoints by name.
	d.subscribe(resource.ClusterType)
	cds := d.recv()
	if cds.GetTypeUrl() != resource.ClusterType || cds.GetSystemVersionInfo() != "v1" || !sameSet(deltaNames(cds), []string{"a-backend-0", "a-backend-1"}) {
		t.Fatalf("CDS: %s %q %v", cds.GetTypeUrl(), cds.GetSystemVersionInfo(), deltaNames(cds))
	}
	for _, r := range cds.GetResources() {
		if r.GetVersion() == "" {
			t.Errorf("resource %s has no version", r.GetName())
		}
	}
	d.ack(cds)
	d.subscribe(resource.EndpointType, "a-backend-0", "a-backend-1")
	eds := d.recv()
	if eds.GetTypeUrl() != resource.EndpointType || len(eds.GetResources()) != 2 {
		t.Fatalf("EDS: %s %v", eds.GetTypeUrl(), deltaNames(eds))
	}
	d.ack(eds)
	st := e.waitStatus(groupA, "delta ACKs", GroupStatus.InSync)
	if st.Nodes[0].Acked[resource.EndpointType] != "v1" || st.Nodes[0].Acked[resource.ClusterType] != "v1" {
		t.Errorf("acked %v", st.Nodes[0].Acked)
	}
	if got := testutil.ToFloat64(e.srv.metrics.streams.WithLabelValues("delta")); got != 1 {
		t.Errorf("delta streams metric %v, want 1", got)
	}

	// An endpoint changes: only EDS is pushed, and only the changed assignment.
	cdsPushes := testutil.ToFloat64(e.srv.metrics.pushes.WithLabelValues("Cluster"))
	cfg.endpointIP = 2
	eps := cfg.endpoints()
	eps[1] = config{prefix: "a", backends: 2, endpointIP: 1}.endpoints()[1] // a-backend-1 unchanged
	if err := e.srv.SetTypes(ctx, groupA, "v2", map[resource.Type][]types.Resource{resource.EndpointType: eps}); err != nil {
		t.Fatal(err)
	}
	eds2 := d.recv()
	if eds2.GetTypeUrl() != resource.EndpointType || eds2.GetSystemVersionInfo() != "v2" || !sameSet(deltaNames(eds2), []string{"a-backend-0"}) {
		t.Fatalf("EDS update: %s %q %v, want only a-backend-0 at v2", eds2.GetTypeUrl(), eds2.GetSystemVersionInfo(), deltaNames(eds2))
	}
	if got := testutil.ToFloat64(e.srv.metrics.pushes.WithLabelValues("Cluster")); got != cdsPushes {
		t.Errorf("an endpoint update pushed clusters (%v -> %v)", cdsPushes, got)
	}
	// The Envoy rejects it: Status says so, and the next version is v3, not v2 again.
	d.nack(eds2, "endpoint 10.0.0.2: no route to host")
	st = e.waitStatus(groupA, "delta NACK", func(s GroupStatus) bool { return s.CurrentNACK() != nil })
	if n := st.CurrentNACK(); n.Version != "v2" || n.TypeURL != resource.EndpointType || n.Message != "endpoint 10.0.0.2: no route to host" {
		t.Errorf("NACK %+v", n)
	}
	if st.InSync() {
		t.Error("in sync after a NACK")
	}
	cfg.endpointIP = 3
	if err := e.srv.SetTypes(ctx, groupA, "v3", map[resource.Type][]types.Resource{resource.EndpointType: cfg.endpoints()}); err != nil {
		t.Fatal(err)
	}
	eds3 := d.recv()
	if eds3.GetSystemVersionInfo() != "v3" {
		t.Fatalf("after NACK: %q, want v3", eds3.GetSystemVersionInfo())
	}
	d.ack(eds3)
	e.waitStatus(groupA, "v3 ACKed", func(s GroupStatus) bool { return s.InSync() && s.CurrentNACK() == nil })

	// A removed cluster is removed over delta too.
	cfg.backends = 1
	if err := e.srv.Set(ctx, groupA, "v4", cfg.all(t)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r := d.recv()
		if len(r.GetRemovedResources()) != 1 || r.GetRemovedResources()[0] != "a-backend-1" {
			t.Errorf("%s: removed %v, want a-backend-1", r.GetTypeUrl(), r.GetRemovedResources())
		}
		d.ack(r)
	}
}
