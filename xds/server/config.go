package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/berthnet/berth/xds/pki"
)

// part is one resource type of a group's configuration: immutable once built, and shared by
// every snapshot until that type changes. Keeping the parts is what makes an endpoints-only
// update cheap: the other types are neither validated, hashed, nor re-sent again.
type part struct {
	version string
	items   map[string]types.ResourceWithTTL
	// hashes is each resource's hash as go-control-plane computes it for delta xDS; it
	// doubles as the change detector (a type whose hashes are unchanged keeps its version).
	hashes map[string]string
	// given is false for the empty part a full Set puts in place of a type it was not
	// given, so that Status does not list types the group never had.
	given bool
	// vhosts are the checked VirtualHosts of a RouteConfiguration part (see vhostSums), and
	// routeConfigs the RouteConfigurations given, by name, which items holds encoded (see
	// checkRouteConfig).
	vhosts       vhostSums
	routeConfigs map[string]*routev3.RouteConfiguration
	// sources are the messages given for a type served in another form (assignments,
	// served encoded: see encodedAssignment), by name; nil for other types.
	sources map[string]types.Resource
	// list is the resources as given to Set or SetTypes; nil for a part SetEndpoints
	// merged. Given the very same list again (the same messages in the same order),
	// newPart returns this part without looking at each resource.
	list []types.Resource
}

// groupConfig is what a group is served: one part per resource type.
type groupConfig struct {
	version string // the version of the last successful Set or SetTypes
	parts   [types.UnknownType]*part
}

// validator is what every generated Envoy resource implements (protoc-gen-validate).
type validator interface{ ValidateAll() error }

// Set replaces group's whole configuration: types missing from resources are served empty.
// Every resource must pass its ValidateAll() and the snapshot must be consistent
// (every EDS cluster has its ClusterLoadAssignment and every RDS name its
// RouteConfiguration, and nothing else); otherwise Set returns the error and the group keeps
// being served its last good configuration. A type whose resources are unchanged keeps its
// previous version, so connected Envoys are not sent it again.
//
// Only what changed since the group's served configuration is validated and hashed: a
// resource given again as the very message served (the same pointer) is known unchanged, and
// one whose bytes hash as the served one's were validated before. So a caller that keeps the
// messages of unchanged resources pays for the changed ones only. A RouteConfiguration is
// checked one VirtualHost at a time (see vhostSums): a changed one whose VirtualHosts are
// mostly the messages served pays for its new VirtualHosts only. Resources handed to the
// server must never be modified afterwards (they are served as they are).
func (s *Server) Set(ctx context.Context, group, version string, resources map[resource.Type][]types.Resource) error {
	return s.set(ctx, group, version, func() error { return s.publish(ctx, group, version, resources, true) })
}

// SetTypes replaces only the types present in resources and keeps the others as they are.
// SetTypes(ctx, g, v, map[resource.Type][]types.Resource{resource.EndpointType: all of g's
// ClusterLoadAssignments}) validates and hashes only the ClusterLoadAssignments that changed,
// and only EDS is pushed.
func (s *Server) SetTypes(ctx context.Context, group, version string, resources map[resource.Type][]types.Resource) error {
	return s.set(ctx, group, version, func() error { return s.publish(ctx, group, version, resources, false) })
}

// SetEndpoints replaces the ClusterLoadAssignments named in changed (by cluster name) and
// keeps the group's others: the hot path of an endpoint change, which costs the server the
// changed assignments only (besides what go-control-plane does per response). Every name
// must be one the group is served an assignment for (clusters come and go with Set), and
// every assignment must pass its ValidateAll() and be named by its key; otherwise nothing
// changes and the error says why.
func (s *Server) SetEndpoints(ctx context.Context, group, version string, changed map[string]types.Resource) error {
	return s.set(ctx, group, version, func() error { return s.publishEndpoints(ctx, group, version, changed) })
}

func (s *Server) set(ctx context.Context, group, version string, publish func() error) error {
	if err := publish(); err != nil {
		s.metrics.rejected.Inc()
		return fmt.Errorf("xds group %s version %s: %w", group, version, err)
	}
	s.tracker.markChanged(group)
	return nil
}

func (s *Server) publish(ctx context.Context, group, version string, resources map[resource.Type][]types.Resource, full bool) error {
	if err := pki.ValidateGroup(group); err != nil {
		return err
	}
	if version == "" {
		return errors.New("version is empty")
	}
	// Build the new parts outside the lock: validation and hashing are the costly steps. The
	// parts served now only spare work (the check against them under the lock decides), so
	// a concurrent publish of the same group costs at most some work twice.
	s.mu.Lock()
	served := s.groups[group]
	s.mu.Unlock()
	fresh := make(map[types.ResponseType]*part, len(resources))
	for typeURL, items := range resources {
		rt := cachev3.GetResponseType(typeURL)
		if rt == types.UnknownType {
			return fmt.Errorf("unknown resource type %q", typeURL)
		}
		var prev *part
		if served != nil {
			prev = served.parts[rt]
		}
		p, err := newPart(typeURL, version, items, prev)
		if err != nil {
			return err
		}
		fresh[rt] = p
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.groups[group]
	next := &groupConfig{version: version}
	if old != nil {
		if old.version == version {
			return fmt.Errorf("version %s is already served; every change needs a new version", version)
		}
		if !full {
			next.parts = old.parts
		}
	}
	for rt := range next.parts {
		p, ok := fresh[types.ResponseType(rt)]
		if !ok {
			if !full {
				continue
			}
			p = &part{version: version}
			if old != nil && old.parts[rt] != nil {
				p.given = old.parts[rt].given // emptied, not never-had
			}
		}
		// Unchanged content keeps its version: nothing to push and nothing new to ACK.
		if old != nil && old.parts[rt] != nil && (old.parts[rt] == p || maps.Equal(old.parts[rt].hashes, p.hashes)) {
			p = old.parts[rt]
		}
		next.parts[rt] = p
	}
	snap := next.snapshot()
	if !stillConsistent(old, next) {
		if err := snap.Consistent(); err != nil {
			return fmt.Errorf("inconsistent snapshot: %w", err)
		}
	}
	if err := s.cache.SetSnapshot(ctx, group, snap); err != nil {
		return fmt.Errorf("publish snapshot: %w", err)
	}
	s.groups[group] = next
	return nil
}

// newPart builds the part of one type from items; prev is the part served now (nil for
// none), whose resources need no new validation or hashing when given again (see Set).
func newPart(typeURL, version string, items []types.Resource, prev *part) (*part, error) {
	if prev != nil && prev.list != nil && len(items) > 0 && slices.Equal(prev.list, items) {
		return prev, nil
	}
	p := &part{
		list:    items,
		version: version,
		items:   make(map[string]types.ResourceWithTTL, len(items)),
		hashes:  make(map[string]string, len(items)),
		given:   true,
	}
	switch typeURL {
	case resource.RouteType:
		p.vhosts = make(vhostSums)
		p.routeConfigs = make(map[string]*routev3.RouteConfiguration, len(items))
	case resource.EndpointType:
		p.sources = make(map[string]types.Resource, len(items))
	}
	for i, r := range items {
		if r == nil {
			return nil, fmt.Errorf("%s #%d is nil", typeURL, i)
		}
		if got := string(r.ProtoReflect().Descriptor().FullName()); "type.googleapis.com/"+got != typeURL {
			return nil, fmt.Errorf("%s #%d is a %s", typeURL, i, got)
		}
		name := cachev3.GetResourceName(r)
		if name == "" {
			return nil, fmt.Errorf("%s #%d has no name", typeURL, i)
		}
		if _, dup := p.items[name]; dup {
			return nil, fmt.Errorf("%s %q is given twice", typeURL, name)
		}
		var h string
		var err error
		served := r
		if rc, ok := r.(*routev3.RouteConfiguration); ok {
			h, served, err = checkedRouteConfig(name, rc, prev, p)
			p.routeConfigs[name] = rc
		} else {
			h, served, err = checked(typeURL, name, r, prev)
		}
		if err != nil {
			return nil, err
		}
		if p.sources != nil {
			p.sources[name] = r
		}
		p.items[name] = types.ResourceWithTTL{Resource: served}
		p.hashes[name] = h
	}
	return p, nil
}

// checkedRouteConfig is checked for a RouteConfiguration, one VirtualHost at a time; it
// also returns the message to serve for rc (see checkRouteConfig).
func checkedRouteConfig(name string, rc *routev3.RouteConfiguration, prev, next *part) (string, types.Resource, error) {
	var served vhostSums
	if prev != nil {
		served = prev.vhosts
		if prev.routeConfigs[name] == rc {
			carryVirtualHosts(rc, served, next.vhosts)
			return prev.hashes[name], prev.items[name].Resource, nil // the very message served
		}
	}
	h, enc, err := checkRouteConfig(rc, served, next.vhosts)
	if err != nil {
		return "", nil, fmt.Errorf("%s %q: %w", resource.RouteType, name, err)
	}
	return h, enc, nil
}

// checked validates one resource, unless prev serves it already, and returns its hash and
// the message to serve for it: r, or for a ClusterLoadAssignment r encoded (see
// encodedAssignment).
func checked(typeURL, name string, r types.Resource, prev *part) (string, types.Resource, error) {
	var was string
	var wasServed types.Resource
	if prev != nil {
		if old, ok := prev.items[name]; ok {
			if old.Resource == r || (prev.sources != nil && prev.sources[name] == r) {
				return prev.hashes[name], old.Resource, nil // the very message served
			}
			was, wasServed = prev.hashes[name], old.Resource
		}
	}
	raw, err := cachev3.MarshalResource(r)
	if err != nil {
		return "", nil, fmt.Errorf("%s %q: marshal: %w", typeURL, name, err)
	}
	h := cachev3.HashResource(raw)
	if h == was {
		return h, wasServed, nil // the same bytes as a resource that passed ValidateAll
	}
	v, ok := r.(validator)
	if !ok {
		return "", nil, fmt.Errorf("%s %q cannot be validated", typeURL, name)
	}
	if err := v.ValidateAll(); err != nil {
		return "", nil, fmt.Errorf("%s %q: %w", typeURL, name, err)
	}
	if typeURL == resource.EndpointType {
		served, err := encodedAssignment(name, raw)
		if err != nil {
			return "", nil, fmt.Errorf("%s %q: %w", typeURL, name, err)
		}
		return h, served, nil
	}
	return h, r, nil
}

// encodedAssignment is the ClusterLoadAssignment whose deterministic encoding is raw, as a
// message holding its cluster name and the rest of raw as unknown fields. go-control-plane
// marshals every resource of a state-of-the-world response again, for each stream; an EDS
// response carries every assignment of the group (thousands), and marshalling this form is
// a copy. It decodes as the original does.
func encodedAssignment(name string, raw []byte) (types.Resource, error) {
	rest := make([]byte, 0, len(raw))
	for b := raw; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		if num != clusterNameField {
			rest = append(rest, b[:n+m]...)
		}
		b = b[n+m:]
	}
	served := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	served.ProtoReflect().SetUnknown(rest)
	return served, nil
}

// clusterNameField is ClusterLoadAssignment's cluster_name.
const clusterNameField protowire.Number = 1

// publishEndpoints merges changed ClusterLoadAssignments into group's served ones.
func (s *Server) publishEndpoints(ctx context.Context, group, version string, changed map[string]types.Resource) error {
	if version == "" {
		return errors.New("version is empty")
	}
	rt := cachev3.GetResponseType(resource.EndpointType)
	s.mu.Lock()
	served := s.groups[group]
	s.mu.Unlock()
	if served == nil || served.parts[rt] == nil {
		return errors.New("no endpoints are served to the group yet: Set its whole configuration first")
	}
	prev := served.parts[rt]
	hashes := make(map[string]string, len(changed))
	encoded := make(map[string]types.Resource, len(changed))
	for name, r := range changed {
		if r == nil {
			return fmt.Errorf("%s %q is nil", resource.EndpointType, name)
		}
		if _, ok := prev.items[name]; !ok {
			return fmt.Errorf("%s %q: the group has no such cluster", resource.EndpointType, name)
		}
		if got := string(r.ProtoReflect().Descriptor().FullName()); "type.googleapis.com/"+got != resource.EndpointType {
			return fmt.Errorf("%s %q is a %s", resource.EndpointType, name, got)
		}
		if n := cachev3.GetResourceName(r); n != name {
			return fmt.Errorf("%s %q is named %q", resource.EndpointType, name, n)
		}
		h, enc, err := checked(resource.EndpointType, name, r, prev)
		if err != nil {
			return err
		}
		hashes[name] = h
		encoded[name] = enc
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.groups[group]
	if old != served {
		// Another publish came between: merge into what it left.
		if old == nil || old.parts[rt] == nil {
			return errors.New("the group's configuration went away")
		}
		for name := range changed {
			if _, ok := old.parts[rt].items[name]; !ok {
				return fmt.Errorf("%s %q: the group has no such cluster", resource.EndpointType, name)
			}
		}
	}
	if old.version == version {
		return fmt.Errorf("version %s is already served; every change needs a new version", version)
	}
	cur := old.parts[rt]
	same := true
	for name, h := range hashes {
		if cur.hashes[name] != h {
			same = false
			break
		}
	}
	next := &groupConfig{version: version, parts: old.parts}
	if !same {
		// The names stay those of the clusters, so the snapshot stays consistent.
		p := &part{version: version, given: true, items: maps.Clone(cur.items), hashes: maps.Clone(cur.hashes), sources: maps.Clone(cur.sources)}
		if p.sources == nil {
			p.sources = map[string]types.Resource{}
		}
		for name, r := range changed {
			p.items[name] = types.ResourceWithTTL{Resource: encoded[name]}
			p.hashes[name] = hashes[name]
			p.sources[name] = r
		}
		next.parts[rt] = p
	}
	if err := s.cache.SetSnapshot(ctx, group, next.snapshot()); err != nil {
		return fmt.Errorf("publish snapshot: %w", err)
	}
	s.groups[group] = next
	return nil
}

// stillConsistent reports whether next is consistent because old was (it was served) and
// nothing the check reads moved: the same listeners, clusters and assignments, and
// RouteConfigurations of the same names. A route change then skips a check that lists
// every cluster and assignment.
func stillConsistent(old, next *groupConfig) bool {
	if old == nil {
		return false
	}
	for _, t := range []types.ResponseType{types.Listener, types.Cluster, types.Endpoint} {
		if old.parts[t] != next.parts[t] {
			return false
		}
	}
	a, b := old.parts[types.Route], next.parts[types.Route]
	if a == nil || b == nil {
		return a == b
	}
	if len(a.hashes) != len(b.hashes) {
		return false
	}
	for name := range b.hashes {
		if _, ok := a.hashes[name]; !ok {
			return false
		}
	}
	return true
}

// snapshot assembles a go-control-plane snapshot from the parts without copying them. The
// version map is filled from the parts' hashes, so a delta stream does not make the cache
// marshal and hash every resource of every type again on each update.
func (c *groupConfig) snapshot() *cachev3.Snapshot {
	snap := &cachev3.Snapshot{VersionMap: make(map[string]map[string]string, len(c.parts))}
	for rt, p := range c.parts {
		if p == nil {
			continue
		}
		typeURL, err := cachev3.GetResponseTypeURL(types.ResponseType(rt))
		if err != nil {
			continue // every index below UnknownType has a type URL
		}
		snap.Resources[rt] = cachev3.Resources{Version: p.version, Items: p.items}
		snap.VersionMap[typeURL] = p.hashes
	}
	return snap
}

// served returns the version each resource type of group is served at.
func (s *Server) served(group string) (string, map[resource.Type]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.groups[group]
	if c == nil {
		return "", nil
	}
	out := make(map[resource.Type]string)
	for rt, p := range c.parts {
		if p == nil || !p.given {
			continue
		}
		if typeURL, err := cachev3.GetResponseTypeURL(types.ResponseType(rt)); err == nil {
			out[typeURL] = p.version
		}
	}
	return c.version, out
}

// Delete stops serving group: its snapshot is dropped, and its connected Envoys keep
// their last configuration until they disconnect.
func (s *Server) Delete(group string) {
	s.mu.Lock()
	delete(s.groups, group)
	s.cache.ClearSnapshot(group)
	s.mu.Unlock()
	s.tracker.markChanged(group)
}

// Groups returns the groups that have a configuration, sorted.
func (s *Server) Groups() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.groups))
}
