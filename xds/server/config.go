package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

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
func (s *Server) Set(ctx context.Context, group, version string, resources map[resource.Type][]types.Resource) error {
	return s.set(ctx, group, version, resources, true)
}

// SetTypes replaces only the types present in resources and keeps the others as they are.
// This is the cheap path for endpoint updates: SetTypes(ctx, g, v,
// map[resource.Type][]types.Resource{resource.EndpointType: all of g's ClusterLoadAssignments})
// validates and hashes only the ClusterLoadAssignments, and only EDS is pushed.
func (s *Server) SetTypes(ctx context.Context, group, version string, resources map[resource.Type][]types.Resource) error {
	return s.set(ctx, group, version, resources, false)
}

func (s *Server) set(ctx context.Context, group, version string, resources map[resource.Type][]types.Resource, full bool) error {
	err := s.publish(ctx, group, version, resources, full)
	if err != nil {
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
	// Build the new parts outside the lock: validation and hashing are the costly steps.
	fresh := make(map[types.ResponseType]*part, len(resources))
	for typeURL, items := range resources {
		rt := cachev3.GetResponseType(typeURL)
		if rt == types.UnknownType {
			return fmt.Errorf("unknown resource type %q", typeURL)
		}
		p, err := newPart(typeURL, version, items)
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
		if old != nil && old.parts[rt] != nil && maps.Equal(old.parts[rt].hashes, p.hashes) {
			p = old.parts[rt]
		}
		next.parts[rt] = p
	}
	snap := next.snapshot()
	if err := snap.Consistent(); err != nil {
		return fmt.Errorf("inconsistent snapshot: %w", err)
	}
	if err := s.cache.SetSnapshot(ctx, group, snap); err != nil {
		return fmt.Errorf("publish snapshot: %w", err)
	}
	s.groups[group] = next
	return nil
}

func newPart(typeURL, version string, items []types.Resource) (*part, error) {
	p := &part{
		version: version,
		items:   make(map[string]types.ResourceWithTTL, len(items)),
		hashes:  make(map[string]string, len(items)),
		given:   true,
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
		v, ok := r.(validator)
		if !ok {
			return nil, fmt.Errorf("%s %q cannot be validated", typeURL, name)
		}
		if err := v.ValidateAll(); err != nil {
			return nil, fmt.Errorf("%s %q: %w", typeURL, name, err)
		}
		raw, err := cachev3.MarshalResource(r)
		if err != nil {
			return nil, fmt.Errorf("%s %q: marshal: %w", typeURL, name, err)
		}
		p.items[name] = types.ResourceWithTTL{Resource: r}
		p.hashes[name] = cachev3.HashResource(raw)
	}
	return p, nil
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
