package chart_test

import (
	"bytes"
	"flag"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"

	"github.com/berthnet/berth/internal/golden"
	"github.com/berthnet/berth/xds/provision"
)

var update = flag.Bool("update", false, "rewrite test/chart/testdata/access.txt")

// accessRow is one line of the access table: a kind (or one object of it,
// or a subresource) and the verbs asked about it.
type accessRow struct {
	group, resource, subresource, name string
	// cluster: a cluster-scoped kind, asked about once.
	cluster bool
	// verbs beside the usual eight (get ... deletecollection).
	extra []string
	// only: ask about these verbs alone (subresources with one verb).
	only []string
}

var standardVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}

// accessRows: everything the chart's accounts touch, and what an attacker
// holding one of them would want (Secrets, tokens, exec, roles,
// impersonation, admission policies).
var accessRows = []accessRow{
	{resource: "secrets"},
	{resource: "secrets", name: "berth-xds-issuer"},
	{resource: "secrets", name: "berth-l2-key"},
	{resource: "secrets", name: "tor-md5"},
	{resource: "configmaps"},
	{resource: "serviceaccounts", extra: []string{"impersonate"}},
	{resource: "serviceaccounts", subresource: "token", only: []string{"create"}},
	{resource: "pods"},
	{resource: "pods", subresource: "exec", only: []string{"create", "get"}},
	{resource: "pods", subresource: "log", only: []string{"get"}},
	{resource: "services"},
	{resource: "services", subresource: "status", only: []string{"get", "update", "patch"}},
	{resource: "endpoints"},
	{resource: "events"},
	{group: "events.k8s.io", resource: "events"},
	{group: "discovery.k8s.io", resource: "endpointslices"},
	{group: "apps", resource: "deployments"},
	{group: "apps", resource: "daemonsets"},
	{group: "coordination.k8s.io", resource: "leases"},
	{group: "networking.k8s.io", resource: "networkpolicies"},
	{group: "networking.k8s.io", resource: "ingresses"},
	{group: "networking.k8s.io", resource: "ingresses", subresource: "status", only: []string{"get", "update", "patch"}},
	{group: "gateway.networking.k8s.io", resource: "gateways"},
	{group: "gateway.networking.k8s.io", resource: "gateways", subresource: "status", only: []string{"get", "update", "patch"}},
	{group: "gateway.networking.k8s.io", resource: "httproutes"},
	{group: "gateway.networking.k8s.io", resource: "httproutes", subresource: "status", only: []string{"get", "update", "patch"}},
	{group: "gateway.networking.k8s.io", resource: "grpcroutes"},
	{group: "gateway.networking.k8s.io", resource: "grpcroutes", subresource: "status", only: []string{"get", "update", "patch"}},
	{group: "gateway.networking.k8s.io", resource: "referencegrants"},
	{group: "rbac.authorization.k8s.io", resource: "roles", extra: []string{"bind", "escalate"}},
	{group: "rbac.authorization.k8s.io", resource: "rolebindings"},
	{resource: "nodes", cluster: true},
	{resource: "nodes", subresource: "status", cluster: true, only: []string{"get", "update", "patch"}},
	{resource: "nodes", subresource: "proxy", cluster: true, only: []string{"get", "create"}},
	{resource: "namespaces", cluster: true},
	{resource: "users", cluster: true, only: []string{"impersonate"}},
	{group: "networking.k8s.io", resource: "ingressclasses", cluster: true},
	{group: "networking.k8s.io", resource: "servicecidrs", cluster: true},
	{group: "gateway.networking.k8s.io", resource: "gatewayclasses", cluster: true},
	{group: "gateway.networking.k8s.io", resource: "gatewayclasses", subresource: "status", cluster: true, only: []string{"get", "update", "patch"}},
	{group: "berth.dev", resource: "ippools", cluster: true},
	{group: "berth.dev", resource: "ippools", subresource: "status", cluster: true, only: []string{"get", "update", "patch"}},
	{group: "berth.dev", resource: "l2announcements", cluster: true},
	{group: "berth.dev", resource: "l2announcements", subresource: "status", cluster: true, only: []string{"get", "update", "patch"}},
	{group: "berth.dev", resource: "bgppeers", cluster: true},
	{group: "berth.dev", resource: "bgppeers", subresource: "status", cluster: true, only: []string{"get", "update", "patch"}},
	{group: "berth.dev", resource: "bgpannouncements", cluster: true},
	{group: "berth.dev", resource: "bgpannouncements", subresource: "status", cluster: true, only: []string{"get", "update", "patch"}},
	{group: "rbac.authorization.k8s.io", resource: "clusterroles", cluster: true, extra: []string{"bind", "escalate"}},
	{group: "rbac.authorization.k8s.io", resource: "clusterrolebindings", cluster: true},
	{group: "admissionregistration.k8s.io", resource: "validatingadmissionpolicies", cluster: true},
	{group: "admissionregistration.k8s.io", resource: "validatingadmissionpolicybindings", cluster: true},
	{group: "authentication.k8s.io", resource: "tokenreviews", cluster: true, only: []string{"create"}},
	{group: "authorization.k8s.io", resource: "subjectaccessreviews", cluster: true, only: []string{"create"}},
}

// TestAccessTableGolden: what each of the chart's ServiceAccounts, and the
// ServiceAccount of an Envoy fleet the controller makes, may do, asked of
// a real API server (SubjectAccessReview) that has the chart's roles:
// testdata/access.txt, for the release namespace, another namespace and
// all namespaces (or the cluster). Regenerate it with `make golden` and
// review its diff as code: a new right shows up there.
func TestAccessTableGolden(t *testing.T) {
	in := install(t, append(fullStack, append(withObjects,
		"loadBalancer.bgpPeers[0].spec.passwordSecret.name=tor-md5", "loadBalancer.bgpPeers[0].spec.passwordSecret.key=password")...)...)
	subjects := []struct{ sa, about string }{
		{"berth-controller", "the controller (Deployment berth-controller)"},
		{"berth-agent", "every node's agent (DaemonSet berth-agent)"},
		{provision.GatewayFleetName("shop", "edge"), "an Envoy fleet the controller makes (here for Gateway shop/edge); its pods mount no token"},
	}
	scopes := []struct{ ns, title string }{{namespace, namespace}, {"tenant", "another namespace"}, {"", "all namespaces"}}
	var out bytes.Buffer
	fmt.Fprintf(&out, "# What each ServiceAccount may do, with the chart's roles (test/chart/access_table_test.go).\n")
	fmt.Fprintf(&out, "# Verbs granted per scope; - is nothing. Cluster-scoped kinds have one column.\n")
	fmt.Fprintf(&out, "# Admission policies refuse more (charts/berth/templates/admission-policy.yaml).\n")
	for _, s := range subjects {
		fmt.Fprintf(&out, "\n## %s: %s\n", s.sa, s.about)
		fmt.Fprintf(&out, "%-58s %-42s %-42s %s\n", "kind", scopes[0].title, scopes[1].title, scopes[2].title+" / cluster")
		for _, r := range accessRows {
			var cols []string
			for _, sc := range scopes {
				if r.cluster && sc.ns != "" {
					continue
				}
				if r.name != "" && sc.ns != namespace {
					continue
				}
				cols = append(cols, in.allowed(t, s.sa, r, sc.ns))
			}
			label := r.resource
			if r.group != "" {
				label += "." + r.group
			}
			if r.subresource != "" {
				label += "/" + r.subresource
			}
			if r.name != "" {
				label += " " + r.name
			}
			switch {
			case r.cluster:
				fmt.Fprintf(&out, "%-58s %-42s %-42s %s\n", label, "", "", cols[0])
			case r.name != "":
				fmt.Fprintf(&out, "%-58s %s\n", label, cols[0])
			default:
				fmt.Fprintf(&out, "%-58s %-42s %-42s %s\n", label, cols[0], cols[1], cols[2])
			}
		}
	}
	// Trailing blanks of the fixed columns say nothing.
	lines := strings.Split(out.String(), "\n")
	for i := range lines {
		lines[i] = strings.TrimRight(lines[i], " ")
	}
	golden.Compare(t, filepath.Join("testdata", "access.txt"), []byte(strings.Join(lines, "\n")), *update)
}

// allowed lists the verbs of the row the ServiceAccount may use in ns
// ("" all namespaces, or the cluster): "all" for the usual eight and the
// extras, "-" for none.
func (in *installed) allowed(t *testing.T, sa string, r accessRow, ns string) string {
	t.Helper()
	verbs := r.only
	if verbs == nil {
		verbs = append(slices.Clone(standardVerbs), r.extra...)
	}
	var granted []string
	for _, v := range verbs {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   serviceAccount(sa),
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: v, Group: r.group, Resource: r.resource, Subresource: r.subresource, Name: r.name,
			},
		}}
		if err := in.admin.Create(in.ctx, sar); err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed {
			granted = append(granted, v)
		}
	}
	switch {
	case len(granted) == 0:
		return "-"
	case len(granted) == len(verbs) && r.only == nil:
		return "all"
	}
	return strings.Join(granted, ",")
}
