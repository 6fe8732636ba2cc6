// Package translator is the second stage of Berth's xDS pipeline: it turns
// one validated ir.Group into the Envoy v3 resources its node group is
// served (listeners, route configurations, clusters, secrets) and, apart,
// the cluster load assignments built from endpoints. It is pure: the same
// IR gives byte-identical resources (marshalled deterministically), so the
// snapshot cache keeps the version of every resource that did not change.
//
// docs/xds.md ("Translation to Envoy") says what each IR feature becomes.
package translator

import (
	"fmt"
	"slices"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berthnet/berth/xds/ir"
)

// Resources are the Envoy resources of one node group, by type URL
// (resourcev3.ListenerType, RouteType, ClusterType, SecretType), each list
// sorted by resource name. Its underlying type is the map
// go-control-plane's cache.NewSnapshot takes, so a Resources value (with
// the EndpointType list from Endpoints added) can be passed to it as is.
type Resources map[resourcev3.Type][]types.Resource

// Translate turns a group into its Envoy resources. It validates the group
// first, and every typed config it packs into an Any with the config's own
// ValidateAll: nothing else can, since a resource's ValidateAll does not
// descend into an Any. The resources themselves are checked with their
// ValidateAll once, where they are served: xds/server's Set and SetTypes
// refuse a configuration with a resource that fails it (and keep serving
// the last good one), so an invalid resource is never served, and a
// translation is not paid for twice (ValidateAll of a route configuration
// of 10,000 routes costs about as much as building it). The tests of this
// package and of package xds run every resource's ValidateAll. An error
// names the listener, port or resource at fault; nothing partial is
// returned with it.
func Translate(g *ir.Group) (Resources, error) {
	return translate(g, nil)
}

func translate(g *ir.Group, m *memoTable) (Resources, error) {
	if g == nil {
		return nil, fmt.Errorf("translate: nil group")
	}
	if err := m.validate(g); err != nil {
		return nil, fmt.Errorf("group %s: invalid IR: %w", g.Name, err)
	}
	for _, c := range g.Clusters {
		if c.Name == invalidBackendCluster {
			return nil, fmt.Errorf("group %s: cluster name %q is reserved for unresolved backends", g.Name, c.Name)
		}
	}
	ports, err := groupPorts(g.HTTP)
	if err != nil {
		return nil, fmt.Errorf("group %s: %w", g.Name, err)
	}

	var listeners, routes []types.Resource
	for _, p := range ports {
		l, rcs, err := buildPort(p, m)
		if err != nil {
			return nil, fmt.Errorf("group %s: port %d: %w", g.Name, p.port, err)
		}
		listeners = append(listeners, l)
		for _, rc := range rcs {
			routes = append(routes, rc)
		}
	}
	clusters, err := buildClusters(g.Clusters, m)
	if err != nil {
		return nil, fmt.Errorf("group %s: %w", g.Name, err)
	}
	secrets, err := buildSecrets(g.HTTP)
	if err != nil {
		return nil, fmt.Errorf("group %s: %w", g.Name, err)
	}

	res := Resources{
		resourcev3.ListenerType: sortByName(listeners),
		resourcev3.RouteType:    sortByName(routes),
		resourcev3.ClusterType:  sortByName(clusters),
		resourcev3.SecretType:   sortByName(secrets),
	}
	// In a fixed order, so the same IR always reports the same error.
	for _, typ := range []resourcev3.Type{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.SecretType} {
		list := res[typ]
		for i, r := range list {
			if i > 0 && name(r) == name(list[i-1]) {
				// Only names the IR does not constrain can do this: an
				// HTTPS listener named like a plain port's route
				// configuration ("http-80").
				return nil, fmt.Errorf("group %s: two of %s %q", g.Name, typeName(typ), name(r))
			}
		}
	}
	return res, nil
}

// validator is what protoc-gen-validate generates on every Envoy message.
type validator interface {
	ValidateAll() error
}

func validate(m proto.Message) error {
	if v, ok := m.(validator); ok {
		return v.ValidateAll()
	}
	return nil
}

// marshalAny packs a typed config, validated first (ValidateAll on the
// enclosing resource does not look inside an Any), deterministically so the
// same config always gives the same bytes.
func marshalAny(m proto.Message) (*anypb.Any, error) {
	if err := validate(m); err != nil {
		return nil, fmt.Errorf("%s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, fmt.Errorf("%s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return a, nil
}

func name(r types.Resource) string {
	if n, ok := r.(interface{ GetName() string }); ok {
		return n.GetName()
	}
	if n, ok := r.(interface{ GetClusterName() string }); ok {
		return n.GetClusterName()
	}
	return ""
}

func typeName(typ resourcev3.Type) string {
	switch typ {
	case resourcev3.ListenerType:
		return "listener"
	case resourcev3.RouteType:
		return "route configuration"
	case resourcev3.ClusterType:
		return "cluster"
	case resourcev3.SecretType:
		return "secret"
	case resourcev3.EndpointType:
		return "cluster load assignment"
	}
	return typ
}

func sortByName(rs []types.Resource) []types.Resource {
	type named struct {
		name string
		r    types.Resource
	}
	ns := make([]named, len(rs))
	for i, r := range rs {
		ns[i] = named{name(r), r}
	}
	// Names are unique (Translate refuses duplicates), so any sort is stable.
	slices.SortFunc(ns, func(a, b named) int { return strings.Compare(a.name, b.name) })
	out := make([]types.Resource, len(ns))
	for i, n := range ns {
		out[i] = n.r
	}
	return out
}
