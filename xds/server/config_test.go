package server

import (
	"context"
	"strings"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestSetRefusesInvalidAndKeepsLastGood is a sequence on one group: each bad Set is
// refused with a reason, and the group keeps serving v1.
func TestSetRefusesInvalidAndKeepsLastGood(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cfg := config{prefix: "a", backends: 2, endpointIP: 1}
	if err := e.srv.Set(ctx, groupA, "v1", cfg.all(t)); err != nil {
		t.Fatal(err)
	}
	with := func(f func(map[resource.Type][]types.Resource)) map[resource.Type][]types.Resource {
		r := cfg.all(t)
		f(r)
		return r
	}
	steps := []struct {
		name      string
		group     string
		version   string
		resources map[resource.Type][]types.Resource
		want      string
	}{
		{"negative connect timeout fails ValidateAll", groupA, "v2", with(func(r map[resource.Type][]types.Resource) {
			r[resource.ClusterType][0].(*cluster.Cluster).ConnectTimeout = durationpb.New(-1)
		}), "ConnectTimeout"},
		{"EDS cluster without endpoints is inconsistent", groupA, "v2", with(func(r map[resource.Type][]types.Resource) {
			r[resource.EndpointType] = r[resource.EndpointType][:1]
		}), "inconsistent"},
		{"endpoints of no cluster are inconsistent", groupA, "v2", with(func(r map[resource.Type][]types.Resource) {
			r[resource.EndpointType] = append(r[resource.EndpointType], &endpoint.ClusterLoadAssignment{ClusterName: "stray"})
		}), "inconsistent"},
		{"route configuration the listener does not name", groupA, "v2", with(func(r map[resource.Type][]types.Resource) {
			r[resource.RouteType] = nil
		}), "inconsistent"},
		{"a cluster under the endpoint type", groupA, "v2", with(func(r map[resource.Type][]types.Resource) {
			r[resource.EndpointType][0] = r[resource.ClusterType][0]
		}), "is a envoy.config.cluster.v3.Cluster"},
		{"duplicate names", groupA, "v2", with(func(r map[resource.Type][]types.Resource) {
			r[resource.ClusterType] = append(r[resource.ClusterType], r[resource.ClusterType][0])
		}), "given twice"},
		{"unknown type", groupA, "v2", map[resource.Type][]types.Resource{"type.googleapis.com/nope": nil}, "unknown resource type"},
		{"version reused", groupA, "v1", cfg.all(t), "already served"},
		{"empty version", groupA, "", cfg.all(t), "version is empty"},
		{"bad group", "gateway/x", "v2", cfg.all(t), "gateway/<namespace>/<name>"},
	}
	for _, s := range steps {
		err := e.srv.Set(ctx, s.group, s.version, s.resources)
		if err == nil || !strings.Contains(err.Error(), s.want) {
			t.Errorf("%s: Set error %v, want it to mention %q", s.name, err, s.want)
		}
	}
	if got := testutil.ToFloat64(e.srv.metrics.rejected); got != float64(len(steps)) {
		t.Errorf("rejected snapshots %v, want %d", got, len(steps))
	}
	// v1 is still what a new Envoy gets.
	st := e.srv.Status(groupA)
	if st.Version != "v1" || st.Served[resource.ClusterType] != "v1" {
		t.Fatalf("after refused Sets: %+v", st)
	}
	c, rec := connectSotw(t, e, groupA, "envoy-1", groupA, resource.EndpointType)
	if got := names(t, fetch(t, c)); len(got) != 2 || rec.last().GetVersionInfo() != "v1" {
		t.Errorf("new Envoy got %v at %q, want both endpoints at v1", got, rec.last().GetVersionInfo())
	}
}

// TestUnchangedTypesKeepTheirVersion: a Set that changes only routes moves only RDS to the
// new version, and SetTypes changes only the types it is given.
func TestUnchangedTypesKeepTheirVersion(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cfg := config{prefix: "a", backends: 2, endpointIP: 1}
	if err := e.srv.Set(ctx, groupA, "v1", cfg.all(t)); err != nil {
		t.Fatal(err)
	}
	secrets := cfg.all(t)[resource.SecretType] // new key material each call: keep one
	set := func(version string) {
		t.Helper()
		r := cfg.all(t)
		r[resource.SecretType] = secrets
		if err := e.srv.Set(ctx, groupA, version, r); err != nil {
			t.Fatal(err)
		}
	}
	set("v2")
	cfg.routePath = "/api/"
	set("v3")
	st := e.srv.Status(groupA)
	want := map[string]string{
		resource.ClusterType: "v1", resource.EndpointType: "v1", resource.ListenerType: "v1",
		resource.RouteType: "v3", resource.SecretType: "v2",
	}
	for typeURL, v := range want {
		if st.Served[typeURL] != v {
			t.Errorf("%s served at %q, want %q", typeURL, st.Served[typeURL], v)
		}
	}
	if len(st.Served) != len(want) || st.Version != "v3" {
		t.Errorf("served %v version %q", st.Served, st.Version)
	}
	cfg.endpointIP = 9
	if err := e.srv.SetTypes(ctx, groupA, "v4", map[resource.Type][]types.Resource{resource.EndpointType: cfg.endpoints()}); err != nil {
		t.Fatal(err)
	}
	st = e.srv.Status(groupA)
	if st.Served[resource.EndpointType] != "v4" || st.Served[resource.RouteType] != "v3" || st.Served[resource.ClusterType] != "v1" {
		t.Errorf("after SetTypes(EDS): %v", st.Served)
	}
	// An endpoints-only update must still be consistent with the clusters it keeps.
	if err := e.srv.SetTypes(ctx, groupA, "v5", map[resource.Type][]types.Resource{resource.EndpointType: cfg.endpoints()[:1]}); err == nil {
		t.Error("SetTypes dropping a cluster's endpoints was accepted")
	}
	if got := e.srv.TakeChanged(); len(got) != 1 || got[0] != groupA {
		t.Errorf("TakeChanged = %v", got)
	}
	if got := e.srv.TakeChanged(); len(got) != 0 {
		t.Errorf("TakeChanged again = %v, want nothing", got)
	}
}

// TestSetEndpointsMergesChanged is a sequence on one group: SetEndpoints replaces the
// assignments it is given and keeps the others, moves only EDS, and refuses (keeping the
// last good) an invalid assignment, an unknown cluster and a misnamed one.
func TestSetEndpointsMergesChanged(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cfg := config{prefix: "a", backends: 2, endpointIP: 1}
	if err := e.srv.SetEndpoints(ctx, groupA, "v0", nil); err == nil {
		t.Error("SetEndpoints before any Set was accepted")
	}
	if err := e.srv.Set(ctx, groupA, "v1", cfg.all(t)); err != nil {
		t.Fatal(err)
	}
	first := cfg.endpoints()[0].(*endpoint.ClusterLoadAssignment)
	cfg.endpointIP = 7
	moved := cfg.endpoints()[1].(*endpoint.ClusterLoadAssignment)
	if err := e.srv.SetEndpoints(ctx, groupA, "v2", map[string]types.Resource{moved.ClusterName: moved}); err != nil {
		t.Fatal(err)
	}
	st := e.srv.Status(groupA)
	if st.Served[resource.EndpointType] != "v2" || st.Served[resource.ClusterType] != "v1" || st.Served[resource.RouteType] != "v1" {
		t.Errorf("after SetEndpoints: %v", st.Served)
	}
	// The same content again is no change: EDS keeps v2.
	again := cfg.endpoints()[1]
	if err := e.srv.SetEndpoints(ctx, groupA, "v3", map[string]types.Resource{moved.ClusterName: again}); err != nil {
		t.Fatal(err)
	}
	if st := e.srv.Status(groupA); st.Served[resource.EndpointType] != "v2" || st.Version != "v3" {
		t.Errorf("after an unchanged SetEndpoints: %+v", st)
	}
	bad := &endpoint.ClusterLoadAssignment{ClusterName: first.ClusterName, Endpoints: []*endpoint.LocalityLbEndpoints{{LoadBalancingWeight: nil, Priority: 200}}}
	bad.Endpoints[0].LbEndpoints = []*endpoint.LbEndpoint{{}}
	for name, changed := range map[string]map[string]types.Resource{
		"invalid":   {first.ClusterName: bad},
		"unknown":   {"stray": &endpoint.ClusterLoadAssignment{ClusterName: "stray"}},
		"misnamed":  {first.ClusterName: moved},
		"not a CLA": {first.ClusterName: cfg.clusters()[0]},
	} {
		if err := e.srv.SetEndpoints(ctx, groupA, "v4-"+name, changed); err == nil {
			t.Errorf("%s assignment accepted", name)
		}
	}
	c, rec := connectSotw(t, e, groupA, "envoy-1", groupA, resource.EndpointType)
	resp := fetch(t, c)
	if len(resp.Resources) != 2 || rec.last().GetVersionInfo() != "v2" {
		t.Fatalf("new Envoy got %d assignments at %q, want 2 at v2", len(resp.Resources), rec.last().GetVersionInfo())
	}
	for _, a := range resp.Resources {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		want := first
		if resourceName(m) == moved.ClusterName {
			want = moved
		}
		if !proto.Equal(m, want) {
			t.Errorf("served %v, want %v", m, want)
		}
	}
}

// TestSetValidatesChangedResourcesOnly: a message served before is not validated again,
// but a new message is, even under a name served before.
func TestSetValidatesChangedResourcesOnly(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cfg := config{prefix: "a", backends: 2, endpointIP: 1}
	r := cfg.all(t)
	if err := e.srv.Set(ctx, groupA, "v1", r); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Set(ctx, groupA, "v2", r); err != nil {
		t.Fatalf("the same messages again: %v", err)
	}
	changed := cfg.all(t)
	changed[resource.SecretType] = r[resource.SecretType]
	changed[resource.ClusterType][0].(*cluster.Cluster).ConnectTimeout = durationpb.New(-1)
	if err := e.srv.Set(ctx, groupA, "v3", changed); err == nil || !strings.Contains(err.Error(), "ConnectTimeout") {
		t.Errorf("a new invalid cluster under a served name: %v", err)
	}
	if st := e.srv.Status(groupA); st.Version != "v2" {
		t.Errorf("after the refused Set: version %q", st.Version)
	}
}
