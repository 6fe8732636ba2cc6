package server

import (
	"context"
	"strings"
	"testing"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// TestRouteConfigurationByVirtualHost is a sequence on one group whose RouteConfiguration
// is rebuilt around the served VirtualHost messages, as the translator's memo does: a new
// invalid VirtualHost is refused, a changed one is served, and equal content under new
// messages keeps RDS's version.
func TestRouteConfigurationByVirtualHost(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cfg := config{prefix: "a", backends: 2, endpointIP: 1}
	r := cfg.all(t)
	served := r[resource.RouteType][0].(*route.RouteConfiguration)
	if err := e.srv.Set(ctx, groupA, "v1", r); err != nil {
		t.Fatal(err)
	}
	rds := func() string { return e.srv.Status(groupA).Served[resource.RouteType] }
	with := func(extra ...*route.VirtualHost) map[resource.Type][]types.Resource {
		next := map[resource.Type][]types.Resource{}
		for k, v := range r {
			next[k] = v
		}
		rc := &route.RouteConfiguration{Name: served.Name, VirtualHosts: append(append([]*route.VirtualHost{}, served.VirtualHosts...), extra...)}
		next[resource.RouteType] = []types.Resource{rc}
		return next
	}

	// A new VirtualHost with no domain fails its ValidateAll; the served one is not it.
	bad := &route.VirtualHost{Name: "bad"}
	if err := e.srv.Set(ctx, groupA, "v2", with(bad)); err == nil || !strings.Contains(err.Error(), "VirtualHosts[1]") {
		t.Errorf("a new invalid virtual host beside the served one: %v", err)
	}
	if got := rds(); got != "v1" {
		t.Errorf("after the refused Set: RDS at %q", got)
	}

	good := &route.VirtualHost{Name: "b", Domains: []string{"b.example.com"}}
	if err := e.srv.Set(ctx, groupA, "v3", with(good)); err != nil {
		t.Fatalf("a new valid virtual host: %v", err)
	}
	if got := rds(); got != "v3" {
		t.Errorf("a virtual host added: RDS at %q, want v3", got)
	}
	// What is served decodes as the RouteConfiguration given.
	given := with(good)[resource.RouteType][0]
	assertServedRoutes := func(want types.Resource) {
		t.Helper()
		e.srv.mu.Lock()
		res := e.srv.groups[groupA].parts[cachev3.GetResponseType(resource.RouteType)].items[served.Name].Resource
		e.srv.mu.Unlock()
		raw, err := cachev3.MarshalResource(res)
		if err != nil {
			t.Fatal(err)
		}
		got := &route.RouteConfiguration{}
		if err := proto.Unmarshal(raw, got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Errorf("served %v, want %v", got, want)
		}
	}
	assertServedRoutes(given)

	// The same content in new messages (every VirtualHost checked afresh): nothing to push.
	copied := with(proto.Clone(good).(*route.VirtualHost))
	rc := copied[resource.RouteType][0].(*route.RouteConfiguration)
	rc.VirtualHosts[0] = proto.Clone(rc.VirtualHosts[0]).(*route.VirtualHost)
	if err := e.srv.Set(ctx, groupA, "v4", copied); err != nil {
		t.Fatal(err)
	}
	if got := rds(); got != "v3" {
		t.Errorf("equal content in new messages: RDS at %q, want v3 kept", got)
	}

	// A field of the RouteConfiguration itself, besides its VirtualHosts, is content too.
	changedHead := with(good)
	changedHead[resource.RouteType][0].(*route.RouteConfiguration).IgnorePortInHostMatching = true
	if err := e.srv.Set(ctx, groupA, "v5", changedHead); err != nil {
		t.Fatal(err)
	}
	if got := rds(); got != "v5" {
		t.Errorf("a RouteConfiguration field changed: RDS at %q, want v5", got)
	}
	assertServedRoutes(changedHead[resource.RouteType][0])
}
