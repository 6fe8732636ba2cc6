package ir

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Validate checks what the second stage relies on: unique names, ports in
// range, one action per route, backends that name clusters of the group,
// regular expressions that compile and are not empty, certificates on every TLS listener. The
// first stage must never produce an invalid Group; a failure here is a bug
// there, reported rather than served.
func (g *Group) Validate() error {
	return g.validate(nil)
}

// Validator validates groups as Group.Validate does, remembering the routes
// that passed: IR values are never modified once built, so a route given
// again as the same value (gatewayapi.Memo keeps those of unchanged routes)
// needs only its references checked against its group's clusters again.
// It remembers the routes that passed in the groups of the last translation
// (the calls between the last two Dones) and of this one. Its tables are
// kept from call to call, so validating a group of thousands of routes of
// which one changed allocates nothing for the others. A Validator is not
// safe for concurrent use; its zero value is ready; a nil one remembers
// nothing.
type Validator struct {
	m routeMemo
}

// Validate returns what g.Validate() returns.
func (v *Validator) Validate(g *Group) error {
	if v == nil {
		return g.Validate()
	}
	if v.m.passed == nil {
		v.m.passed = map[*HTTPRoute]uint64{}
		v.m.epoch = 1
	}
	return g.validate(&v.m)
}

// Done ends a translation: the routes of the groups validated since the
// last Done are those the next ones may skip.
func (v *Validator) Done() {
	if v == nil || v.m.passed == nil {
		return
	}
	for r, e := range v.m.passed {
		if e != v.m.epoch {
			delete(v.m.passed, r)
		}
	}
	v.m.epoch++
}

// routeMemo is a Validator's state: each route that passed, with the
// translation (epoch) it last passed in, and scratch tables.
type routeMemo struct {
	epoch  uint64
	passed map[*HTTPRoute]uint64
	// clusters, listeners and routes are Group.validate's name tables.
	clusters, listeners, routes map[string]bool
}

// table returns an empty name table, reusing *t when m is not nil.
func (m *routeMemo) table(t *map[string]bool, size int) map[string]bool {
	if m == nil {
		return make(map[string]bool, size)
	}
	if *t == nil {
		*t = make(map[string]bool, size)
	} else {
		clear(*t)
	}
	return *t
}

// validate validates r, sparing the checks of its own fields when m holds it.
func (m *routeMemo) validate(r *HTTPRoute, clusters map[string]bool) error {
	if m == nil {
		return errors.Join(r.validateSelf(), r.validateRefs(clusters))
	}
	if e, ok := m.passed[r]; ok {
		if e != m.epoch {
			m.passed[r] = m.epoch
		}
		return r.validateRefs(clusters)
	}
	err := r.validateSelf()
	if err == nil {
		m.passed[r] = m.epoch
	}
	return errors.Join(err, r.validateRefs(clusters))
}

func (g *Group) validate(m *routeMemo) error {
	var errs []error
	if g.Name == "" {
		errs = append(errs, errors.New("group has no name"))
	}
	var scratch routeMemo
	tables := &scratch
	if m != nil {
		tables = m
	}
	clusters := m.table(&tables.clusters, len(g.Clusters))
	for _, c := range g.Clusters {
		if c.Name == "" || clusters[c.Name] {
			errs = append(errs, fmt.Errorf("cluster %q: empty or duplicate name", c.Name))
		}
		clusters[c.Name] = true
		if c.Port < 1 || c.Port > 65535 {
			errs = append(errs, fmt.Errorf("cluster %s: port %d out of range", c.Name, c.Port))
		}
		if c.Protocol != HTTP && c.Protocol != HTTP2 {
			errs = append(errs, fmt.Errorf("cluster %s: protocol %q is not HTTP or HTTP2", c.Name, c.Protocol))
		}
	}
	listeners := m.table(&tables.listeners, len(g.HTTP))
	for _, l := range g.HTTP {
		if l.Name == "" || listeners[l.Name] {
			errs = append(errs, fmt.Errorf("listener %q: empty or duplicate name", l.Name))
		}
		listeners[l.Name] = true
		if l.Port < 1 || l.Port > 65535 {
			errs = append(errs, fmt.Errorf("listener %s: port %d out of range", l.Name, l.Port))
		}
		if l.TLS != nil && len(l.TLS.Certificates) == 0 {
			errs = append(errs, fmt.Errorf("listener %s: TLS without a certificate", l.Name))
		}
		if l.TLS != nil {
			for _, c := range l.TLS.Certificates {
				if c.Name == "" || len(c.Chain) == 0 || len(c.Key) == 0 {
					errs = append(errs, fmt.Errorf("listener %s: certificate %q without name, chain or key", l.Name, c.Name))
				}
			}
		}
		routes := m.table(&tables.routes, len(l.Routes))
		for _, r := range l.Routes {
			if r.Name == "" || routes[r.Name] {
				errs = append(errs, fmt.Errorf("listener %s: route %q: empty or duplicate name", l.Name, r.Name))
			}
			routes[r.Name] = true
			if err := m.validate(r, clusters); err != nil {
				errs = append(errs, fmt.Errorf("listener %s: route %s: %w", l.Name, r.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// validateRefs checks that r's backends and mirrors name clusters of the group.
func (r *HTTPRoute) validateRefs(clusters map[string]bool) error {
	var errs []error
	for _, b := range r.Backends {
		if b.Cluster != "" && !clusters[b.Cluster] {
			errs = append(errs, fmt.Errorf("backend names unknown cluster %q", b.Cluster))
		}
	}
	for _, m := range r.Mirrors {
		if !clusters[m.Cluster] {
			errs = append(errs, fmt.Errorf("mirror names unknown cluster %q", m.Cluster))
		}
	}
	return errors.Join(errs...)
}

// validateSelf checks r's own fields, which hold whatever the group around it.
func (r *HTTPRoute) validateSelf() error {
	var errs []error
	errs = appendErr(errs, r.RequestHeaders.validate("request headers"))
	errs = appendErr(errs, r.ResponseHeaders.validate("response headers"))
	actions := 0
	if r.Redirect != nil {
		actions++
		if c := r.Redirect.StatusCode; c != 301 && c != 302 && c != 303 && c != 307 && c != 308 {
			errs = append(errs, fmt.Errorf("redirect status %d", c))
		}
		errs = appendErr(errs, r.Redirect.Path.validate(r.Path))
	}
	if r.DirectResponse != nil {
		actions++
		if s := r.DirectResponse.Status; s < 200 || s > 599 {
			errs = append(errs, fmt.Errorf("direct response status %d", s))
		}
	}
	if len(r.Backends) > 0 {
		actions++
		var total uint32
		for _, b := range r.Backends {
			total += b.Weight
		}
		if total == 0 {
			errs = append(errs, errors.New("all backend weights are zero (use a direct response)"))
		}
	}
	if actions != 1 {
		errs = append(errs, fmt.Errorf("%d actions, want exactly one of redirect, direct response, backends", actions))
	}
	if r.Rewrite != nil {
		errs = appendErr(errs, r.Rewrite.Path.validate(r.Path))
	}
	for _, m := range r.Mirrors {
		if m.Percent < 0 || m.Percent > 100 {
			errs = append(errs, fmt.Errorf("mirror percent %v", m.Percent))
		}
	}
	if r.Timeout < 0 || r.BackendTimeout < 0 {
		errs = append(errs, fmt.Errorf("negative timeout %v or backend timeout %v", r.Timeout, r.BackendTimeout))
	}
	if r.TimeoutDisabled && r.Timeout != 0 {
		errs = append(errs, fmt.Errorf("timeout %v on a route whose timeout is disabled", r.Timeout))
	}
	if r.Path != nil {
		errs = appendErr(errs, r.Path.validate("path"))
		if r.Path.Type != Regex && !strings.HasPrefix(r.Path.Value, "/") {
			errs = append(errs, fmt.Errorf("path %q does not start with /", r.Path.Value))
		}
	}
	for _, h := range r.Headers {
		if h.Type != Exact && h.Type != Prefix { // only these need no check (nor the name in a string)
			errs = appendErr(errs, h.validate("header "+h.Name))
		}
	}
	for _, q := range r.QueryParams {
		if q.Type != Exact && q.Type != Prefix {
			errs = appendErr(errs, q.validate("query parameter "+q.Name))
		}
	}
	return errors.Join(errs...)
}

// validate refuses what Envoy refuses of a header it adds, sets or removes
// (and a NACK would refuse with every route of the port): an empty name,
// or a NUL, CR or LF in a name or value.
func (m *HeaderModifier) validate(what string) error {
	if m == nil {
		return nil
	}
	var errs []error
	for _, hs := range [][]Header{m.Add, m.Set} {
		for _, h := range hs {
			if h.Name == "" || strings.ContainsAny(h.Name, "\x00\r\n") || strings.ContainsAny(h.Value, "\x00\r\n") {
				errs = append(errs, fmt.Errorf("%s: header %q: empty name, or NUL, CR or LF in its name or value %q", what, h.Name, h.Value))
			}
		}
	}
	for _, n := range m.Remove {
		if n == "" || strings.ContainsAny(n, "\x00\r\n") {
			errs = append(errs, fmt.Errorf("%s: removed header %q: empty, or NUL, CR or LF in it", what, n))
		}
	}
	return errors.Join(errs...)
}

// appendErr appends err when it is not nil: most routes are valid, and a
// slice of nils would cost an allocation per route.
func appendErr(errs []error, err error) []error {
	if err != nil {
		return append(errs, err)
	}
	return errs
}

func (m *StringMatch) validate(what string) error {
	switch m.Type {
	case Exact, Prefix:
		return nil
	case Regex:
		if m.Value == "" {
			return fmt.Errorf("%s: empty regular expression", what)
		}
		if _, err := regexp.Compile(m.Value); err != nil {
			return fmt.Errorf("%s: regular expression: %w", what, err)
		}
		return nil
	}
	return fmt.Errorf("%s: match type %q", what, m.Type)
}

func (p *PathModifier) validate(match *StringMatch) error {
	if p == nil {
		return nil
	}
	if (p.FullPath == nil) == (p.PrefixMatch == nil) {
		return errors.New("path modifier needs exactly one of full path and prefix")
	}
	if p.PrefixMatch != nil && (match == nil || match.Type != Prefix) {
		return errors.New("prefix replacement on a route without a path prefix match")
	}
	return nil
}
