package server

import (
	"context"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	sotw "github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

const groupA = "gateway/default/a"
const groupB = "gateway/default/b"

// fetch waits for the next response of an ADS client.
func fetch(t *testing.T, c sotw.ADSClient) *sotw.Response {
	t.Helper()
	resp, err := within(t, "fetch", c.Fetch)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	return resp
}

// names returns the names of the resources in a response.
func names(t *testing.T, resp *sotw.Response) []string {
	t.Helper()
	var out []string
	for _, a := range resp.Resources {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, resourceName(m))
	}
	return out
}

func resourceName(m proto.Message) string { return cachev3.GetResourceName(m) }

func connectSotw(t *testing.T, e *env, certGroup, nodeID, nodeGroup string, typeURL string) (sotw.ADSClient, *recorder) {
	t.Helper()
	conn, rec := e.dial(certGroup)
	c := sotw.NewADSClient(e.ctx, node(nodeID, nodeGroup), typeURL)
	if err := c.InitConnect(conn); err != nil {
		t.Fatal(err)
	}
	return c, rec
}

func TestSotwInitialFetchACKAndInSync(t *testing.T) {
	e := newEnv(t)
	cfg := config{prefix: "a", backends: 2, endpointIP: 1}
	if err := e.srv.Set(context.Background(), groupA, "v1", cfg.all(t)); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		resource.ClusterType:  {"a-backend-0", "a-backend-1"},
		resource.EndpointType: {"a-backend-0", "a-backend-1"},
		resource.ListenerType: {"a-http"},
		resource.RouteType:    {"a-routes"},
		resource.SecretType:   {"a-cert"},
	}
	clients := map[string]sotw.ADSClient{}
	for typeURL, wantNames := range want {
		c, rec := connectSotw(t, e, groupA, "envoy-1", groupA, typeURL)
		resp := fetch(t, c)
		got := names(t, resp)
		if !sameSet(got, wantNames) {
			t.Errorf("%s: got %v, want %v", typeURL, got, wantNames)
		}
		if r := rec.last(); r.GetVersionInfo() != "v1" || r.GetNonce() == "" || r.GetTypeUrl() != typeURL {
			t.Errorf("%s: response version %q nonce %q type %q", typeURL, r.GetVersionInfo(), r.GetNonce(), r.GetTypeUrl())
		}
		clients[typeURL] = c
	}
	// Received but not yet ACKed: the node is connected, not in sync.
	st := e.waitStatus(groupA, "five streams", func(s GroupStatus) bool { return len(s.Nodes) == 1 && s.Nodes[0].Streams == 5 })
	if st.InSync() {
		t.Errorf("in sync before any ACK: %+v", st)
	}
	for _, c := range clients {
		if err := c.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	st = e.waitStatus(groupA, "every type ACKed", GroupStatus.InSync)
	for typeURL := range want {
		if got := st.Nodes[0].Acked[typeURL]; got != "v1" {
			t.Errorf("%s ACKed %q, want v1", typeURL, got)
		}
	}
	if st.Nodes[0].ID != "envoy-1" || st.Version != "v1" || st.LastNACK != nil {
		t.Errorf("status %+v", st)
	}
	if got := testutil.ToFloat64(e.srv.metrics.streams.WithLabelValues("sotw")); got != 5 {
		t.Errorf("connected streams metric %v, want 5", got)
	}
	if got := testutil.ToFloat64(e.srv.metrics.pushes.WithLabelValues("Cluster")); got != 1 {
		t.Errorf("cluster pushes %v, want 1", got)
	}
}

func TestSotwNACKKeepsLastGood(t *testing.T) {
	e := newEnv(t)
	cfg := config{prefix: "a", backends: 1, endpointIP: 1}
	if err := e.srv.Set(context.Background(), groupA, "v1", cfg.all(t)); err != nil {
		t.Fatal(err)
	}
	c, rec := connectSotw(t, e, groupA, "envoy-1", groupA, resource.ClusterType)
	fetch(t, c)
	if err := c.Ack(); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(groupA, "v1 ACKed", GroupStatus.InSync)

	// v2 changes the cluster; the Envoy rejects it.
	v2 := cfg.all(t)
	v2[resource.ClusterType][0].(*cluster.Cluster).ConnectTimeout = durationpb.New(7e9)
	if err := e.srv.Set(context.Background(), groupA, "v2", v2); err != nil {
		t.Fatal(err)
	}
	fetch(t, c)
	if r := rec.last(); r.GetVersionInfo() != "v2" {
		t.Fatalf("got version %q, want v2", r.GetVersionInfo())
	}
	const why = "cluster a-backend-0: connect_timeout too long for this Envoy"
	if err := c.Nack(why); err != nil {
		t.Fatal(err)
	}
	st := e.waitStatus(groupA, "NACK recorded", func(s GroupStatus) bool { return s.LastNACK != nil })
	n := st.CurrentNACK()
	if n == nil || n.Version != "v2" || n.TypeURL != resource.ClusterType || n.Message != why || n.Node != "envoy-1" {
		t.Fatalf("NACK %+v", st.LastNACK)
	}
	if st.InSync() || st.Nodes[0].Acked[resource.ClusterType] != "v1" {
		t.Errorf("after NACK: in sync %v, acked %q, want false and v1 (the Envoy keeps its last good config)", st.InSync(), st.Nodes[0].Acked[resource.ClusterType])
	}
	if got := testutil.ToFloat64(e.srv.metrics.nacks.WithLabelValues("Cluster")); got != 1 {
		t.Errorf("NACK metric %v, want 1", got)
	}

	// The rejected v2 is not sent again: the next response on the stream is v3.
	v3 := cfg.all(t)
	v3[resource.ClusterType][0].(*cluster.Cluster).ConnectTimeout = durationpb.New(3e9)
	if err := e.srv.Set(context.Background(), groupA, "v3", v3); err != nil {
		t.Fatal(err)
	}
	fetch(t, c)
	if r := rec.last(); r.GetVersionInfo() != "v3" {
		t.Fatalf("after a NACK of v2, got version %q, want v3", r.GetVersionInfo())
	}
	if err := c.Ack(); err != nil {
		t.Fatal(err)
	}
	st = e.waitStatus(groupA, "v3 ACKed", GroupStatus.InSync)
	if st.CurrentNACK() != nil || st.LastNACK == nil || st.LastNACK.Version != "v2" {
		t.Errorf("after v3: current NACK %+v, last %+v", st.CurrentNACK(), st.LastNACK)
	}
}

// TestSotwVersionAndNonce drives a raw stream to check what the client library hides.
func TestSotwVersionAndNonce(t *testing.T) {
	e := newEnv(t)
	cfg := config{prefix: "a", backends: 1, endpointIP: 1}
	if err := e.srv.Set(context.Background(), groupA, "v1", cfg.all(t)); err != nil {
		t.Fatal(err)
	}
	conn, _ := e.dial(groupA)
	str, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(req *discovery.DiscoveryRequest) {
		t.Helper()
		req.TypeUrl = resource.ClusterType
		if err := str.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	recv := func() *discovery.DiscoveryResponse {
		t.Helper()
		r, err := within(t, "recv", str.Recv)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	acked := func() string {
		st := e.srv.Status(groupA)
		if len(st.Nodes) == 0 {
			return ""
		}
		return st.Nodes[0].Acked[resource.ClusterType]
	}

	send(&discovery.DiscoveryRequest{Node: node("envoy-1", groupA)})
	r1 := recv()
	// No watch is open until the client answers: v2 waits for the ACK of v1.
	cfg.routePath = "/v2/"
	v2 := cfg.all(t)
	v2[resource.ClusterType][0].(*cluster.Cluster).ConnectTimeout = durationpb.New(2e9)
	if err := e.srv.Set(context.Background(), groupA, "v2", v2); err != nil {
		t.Fatal(err)
	}
	send(&discovery.DiscoveryRequest{VersionInfo: r1.GetVersionInfo(), ResponseNonce: r1.GetNonce()})
	e.waitStatus(groupA, "v1 ACKed", func(GroupStatus) bool { return acked() == "v1" })
	r2 := recv()
	if r1.GetVersionInfo() != "v1" || r2.GetVersionInfo() != "v2" || r1.GetNonce() == r2.GetNonce() {
		t.Fatalf("responses (%q, %q), (%q, %q)", r1.GetVersionInfo(), r1.GetNonce(), r2.GetVersionInfo(), r2.GetNonce())
	}
	// A request that names r2's nonce with another version is not its ACK: the server
	// answers it with v2 again, under a new nonce.
	send(&discovery.DiscoveryRequest{VersionInfo: "v9", ResponseNonce: r2.GetNonce()})
	r2again := recv()
	if r2again.GetVersionInfo() != "v2" || r2again.GetNonce() == r2.GetNonce() {
		t.Fatalf("answer to a wrong version: %q nonce %q", r2again.GetVersionInfo(), r2again.GetNonce())
	}
	if got := acked(); got != "v1" {
		t.Fatalf("acked %q after a request with a wrong version, want v1", got)
	}
	// A request with the stale nonce of r1 is neither answered nor an ACK of anything new.
	send(&discovery.DiscoveryRequest{VersionInfo: "v2", ResponseNonce: r1.GetNonce()})
	send(&discovery.DiscoveryRequest{VersionInfo: "v2", ResponseNonce: r2again.GetNonce()})
	st := e.waitStatus(groupA, "v2 ACKed", func(GroupStatus) bool { return acked() == "v2" })
	if st.LastNACK != nil {
		t.Errorf("unexpected NACK %+v", st.LastNACK)
	}
	cfg.routePath = "/v3/"
	v3 := cfg.all(t)
	v3[resource.ClusterType][0].(*cluster.Cluster).ConnectTimeout = durationpb.New(3e9)
	if err := e.srv.Set(context.Background(), groupA, "v3", v3); err != nil {
		t.Fatal(err)
	}
	if r3 := recv(); r3.GetVersionInfo() != "v3" || r3.GetNonce() == r2.GetNonce() {
		t.Fatalf("third response %q nonce %q", r3.GetVersionInfo(), r3.GetNonce())
	}
}

func TestSotwReconnectGetsCurrentVersion(t *testing.T) {
	e := newEnv(t)
	cfg := config{prefix: "a", backends: 1, endpointIP: 1}
	if err := e.srv.Set(context.Background(), groupA, "v1", cfg.all(t)); err != nil {
		t.Fatal(err)
	}
	conn, _ := e.dial(groupA)
	ctx, cancel := context.WithCancel(e.ctx)
	c := sotw.NewADSClient(ctx, node("envoy-1", groupA), resource.EndpointType)
	if err := c.InitConnect(conn); err != nil {
		t.Fatal(err)
	}
	fetch(t, c)
	if err := c.Ack(); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(groupA, "connected and ACKed", GroupStatus.InSync)
	cancel()
	_ = conn.Close()
	e.waitStatus(groupA, "disconnected", func(s GroupStatus) bool { return len(s.Nodes) == 0 })

	cfg.endpointIP = 2
	if err := e.srv.SetTypes(context.Background(), groupA, "v2", map[resource.Type][]types.Resource{resource.EndpointType: cfg.endpoints()}); err != nil {
		t.Fatal(err)
	}
	c2, rec := connectSotw(t, e, groupA, "envoy-1", groupA, resource.EndpointType)
	fetch(t, c2)
	if v := rec.last().GetVersionInfo(); v != "v2" {
		t.Errorf("after reconnect got %q, want v2", v)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}
