package ir

import (
	"strings"
	"testing"
)

func validGroup() *Group {
	full := "/new"
	return &Group{
		Name:     "gateway/default/eg",
		Clusters: []*Cluster{{Name: "default/web/8080", Namespace: "default", Service: "web", Port: 8080, Protocol: HTTP}},
		HTTP: []*HTTPListener{{
			Name: "default/eg/http", Port: 80, Hostname: "*.example.com",
			Routes: []*HTTPRoute{
				{Name: "a", Hostname: "a.example.com", Path: &StringMatch{Type: Prefix, Value: "/api"},
					Rewrite:  &URLRewrite{Path: &PathModifier{FullPath: &full}},
					Backends: []*Backend{{Cluster: "default/web/8080", Weight: 1}, {Weight: 1}}},
				{Name: "b", Redirect: &Redirect{StatusCode: 301}},
			},
		}},
	}
}

func TestValidate(t *testing.T) {
	if err := validGroup().Validate(); err != nil {
		t.Fatalf("valid group: %v", err)
	}
	prefix := "/x"
	for _, tc := range []struct {
		name    string
		breakIt func(g *Group)
		want    string
	}{
		{"duplicate cluster", func(g *Group) { g.Clusters = append(g.Clusters, g.Clusters[0]) }, "duplicate name"},
		{"port", func(g *Group) { g.HTTP[0].Port = 0 }, "port 0 out of range"},
		{"tls without certificate", func(g *Group) { g.HTTP[0].TLS = &TLS{} }, "TLS without a certificate"},
		{"unknown cluster", func(g *Group) { g.HTTP[0].Routes[0].Backends[0].Cluster = "nope" }, `unknown cluster "nope"`},
		{"two actions", func(g *Group) { g.HTTP[0].Routes[1].DirectResponse = &DirectResponse{Status: 500} }, "2 actions"},
		{"no action", func(g *Group) { g.HTTP[0].Routes[1].Redirect = nil }, "0 actions"},
		{"zero weights", func(g *Group) {
			for _, b := range g.HTTP[0].Routes[0].Backends {
				b.Weight = 0
			}
		}, "weights are zero"},
		{"bad regex", func(g *Group) { g.HTTP[0].Routes[0].Path = &StringMatch{Type: Regex, Value: "(["} }, "regular expression"},
		{"header value", func(g *Group) {
			g.HTTP[0].Routes[1].ResponseHeaders = &HeaderModifier{Set: []Header{{Name: "x-a", Value: "a\r\nb"}}}
		}, `response headers: header "x-a"`},
		{"disabled timeout with a value", func(g *Group) {
			g.HTTP[0].Routes[0].TimeoutDisabled, g.HTTP[0].Routes[0].Timeout = true, 5
		}, "timeout is disabled"},
		{"negative timeout", func(g *Group) { g.HTTP[0].Routes[0].BackendTimeout = -1 }, "negative timeout"},
		{"empty regex", func(g *Group) {
			g.HTTP[0].Routes[0].Headers = []*NamedMatch{{Name: "x", StringMatch: StringMatch{Type: Regex}}}
		}, "header x: empty regular expression"},
		{"prefix rewrite on exact", func(g *Group) {
			g.HTTP[0].Routes[0].Path.Type = Exact
			g.HTTP[0].Routes[0].Rewrite.Path = &PathModifier{PrefixMatch: &prefix}
		}, "without a path prefix match"},
		{"redirect code", func(g *Group) { g.HTTP[0].Routes[1].Redirect.StatusCode = 200 }, "redirect status 200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := validGroup()
			tc.breakIt(g)
			err := g.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
			// A Validator says the same, the second time too (a route that failed is
			// not remembered as valid).
			var v Validator
			for i := range 2 {
				if err := v.Validate(g); err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Validator.Validate() #%d = %v, want an error containing %q", i, err, tc.want)
				}
				v.Done()
			}
		})
	}
}

// TestValidatorChecksReferencesOfKnownRoutes: a route that passed is given again in a
// group without the cluster it names; its own fields are not checked again, its
// references are.
func TestValidatorChecksReferencesOfKnownRoutes(t *testing.T) {
	var v Validator
	g := validGroup()
	if err := v.Validate(g); err != nil {
		t.Fatal(err)
	}
	v.Done()
	if err := v.Validate(g); err != nil {
		t.Fatalf("the same group again: %v", err)
	}
	v.Done()
	without := &Group{Name: g.Name, HTTP: g.HTTP}
	if err := v.Validate(without); err == nil || !strings.Contains(err.Error(), `unknown cluster "default/web/8080"`) {
		t.Fatalf("known routes in a group without their cluster: %v", err)
	}
}
