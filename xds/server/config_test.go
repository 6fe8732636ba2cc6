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
