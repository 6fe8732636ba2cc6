package gatewayapi

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/berthnet/berth/xds/ir"
)

// Ingress listener ports.
const (
	ingressHTTPPort  = 80
	ingressHTTPSPort = 443
)

// ingressClass is one Berth IngressClass during translation.
type ingressClass struct {
	name     string
	entries  []routeEntry
	certs    map[string]*ir.Certificate
	clusters map[string]*ir.Cluster
	results  []int // indices into Result.Ingresses
	// claims is who holds each host in first-namespace mode, nil when
	// hosts are shared; claimErr is a bad host-claim annotation.
	claims   ingressHosts
	claimErr error
}

// translateIngresses builds one group per Berth IngressClass from the
// Ingresses of that class (and, for the default class, those without one)
// and records which group serves each Ingress. valid validates the groups.
func translateIngresses(res *Resources, ix *index, controller string, out *Result, valid *ir.Validator) []*ir.Group {
	classes := map[string]*ingressClass{}
	var names []string
	defaultClass := ""
	for i := range res.IngressClasses {
		ic := &res.IngressClasses[i]
		if ic.Spec.Controller != controller {
			continue
		}
		c := &ingressClass{name: ic.Name, certs: map[string]*ir.Certificate{}, clusters: map[string]*ir.Cluster{}}
		first, err := parseHostClaim(ic)
		if first {
			c.claims = ingressHosts{}
		}
		c.claimErr = err
		classes[ic.Name] = c
		names = append(names, ic.Name)
		// Of several default classes, the first by name takes them all.
		if ic.Annotations[DefaultIngressClassAnnotation] == "true" && (defaultClass == "" || ic.Name < defaultClass) {
			defaultClass = ic.Name
		}
	}
	if len(classes) == 0 {
		return nil
	}
	sort.Strings(names)

	order := sortedBy(len(res.Ingresses), func(i int) (string, string) { return res.Ingresses[i].Namespace, res.Ingresses[i].Name })
	// Every Ingress of a class claims its hosts before any is translated.
	for _, i := range order {
		ing := &res.Ingresses[i]
		if ic := classes[ingressClassOf(ing, defaultClass)]; ic != nil && ic.claims != nil {
			ic.claims.claimAll(ing)
		}
	}
	for _, i := range order {
		ing := &res.Ingresses[i]
		ic := classes[ingressClassOf(ing, defaultClass)]
		if ic == nil {
			continue
		}
		problems := ic.add(ing, ix)
		if ic.claimErr != nil {
			problems = append(problems, ic.claimErr.Error())
		}
		ic.results = append(ic.results, len(out.Ingresses))
		out.Ingresses = append(out.Ingresses, IngressResult{Namespace: ing.Namespace, Name: ing.Name, Group: "ingress/" + ic.name, Problems: problems})
	}

	var groups []*ir.Group
	for _, name := range names {
		ic := classes[name]
		g := ic.group()
		if err := valid.Validate(g); err != nil {
			g = &ir.Group{Name: g.Name}
			msg := "internal error, please report: translation produced an invalid configuration: " + strings.ReplaceAll(err.Error(), "\n", "; ")
			for _, r := range ic.results {
				out.Ingresses[r].Problems = append(out.Ingresses[r].Problems, msg)
			}
		}
		groups = append(groups, g)
	}
	return groups
}

// ingressClassOf is the class an Ingress names (spec.ingressClassName, else
// the legacy annotation), or the default class when it names none.
func ingressClassOf(ing *networkingv1.Ingress, defaultClass string) string {
	if ing.Spec.IngressClassName != nil {
		return *ing.Spec.IngressClassName
	}
	if a, ok := ing.Annotations[LegacyIngressClassAnnotation]; ok {
		return a
	}
	return defaultClass
}

// add translates one Ingress into the class and returns what in it could
// not be served.
func (ic *ingressClass) add(ing *networkingv1.Ingress, ix *index) []string {
	var problems []string
	problem := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	for i, t := range ing.Spec.TLS {
		if t.SecretName == "" {
			problem("tls[%d]: no secretName; Berth has no default certificate", i)
			continue
		}
		c, err := certificate(ix.secrets[nn{ing.Namespace, t.SecretName}])
		if err != nil {
			problem("tls[%d]: Secret %s/%s: %v", i, ing.Namespace, t.SecretName, err)
			continue
		}
		if why := ic.claims.tlsRefusal(t.Hosts, c.Chain, ing.Namespace); why != "" {
			problem("tls[%d]: Secret %s/%s: %s; the certificate is not served", i, ing.Namespace, t.SecretName, why)
			continue
		}
		c.Name = ing.Namespace + "/" + t.SecretName
		ic.certs[c.Name] = c
	}

	prefix := "ingress/" + ing.Namespace + "/" + ing.Name
	owner := "Ingress/" + ing.Namespace + "/" + ing.Name
	created := ing.CreationTimestamp.Time
	for i, rule := range ing.Spec.Rules {
		if rule.HTTP == nil {
			continue
		}
		if why := ic.claims.refusal(rule.Host, ing.Namespace); why != "" {
			problem("rules[%d]: %s; not served", i, why)
			continue
		}
		for j := range rule.HTTP.Paths {
			p := &rule.HTTP.Paths[j]
			path, err := ingressPath(p)
			if err != nil {
				problem("rules[%d].http.paths[%d]: %v", i, j, err)
				continue
			}
			r := &ir.HTTPRoute{
				Name:     prefix + "/rule/" + strconv.Itoa(i) + "/path/" + strconv.Itoa(j) + "/host/" + rule.Host,
				Hostname: rule.Host,
				Path:     path,
			}
			ic.action(r, ing.Namespace, &p.Backend, fmt.Sprintf("rules[%d].http.paths[%d]", i, j), ix, problem)
			k := precedence{created: created, source: owner, rule: i, match: j}
			k.pathRank, k.pathLen = pathRank(path)
			ic.entries = append(ic.entries, routeEntry{key: k.withHost(rule.Host), route: r})
		}
	}
	if b := ing.Spec.DefaultBackend; b != nil {
		if why := ic.claims.refusal("", ing.Namespace); why != "" {
			problem("defaultBackend: %s; not served", why)
			return problems
		}
		r := &ir.HTTPRoute{Name: prefix + "/default", Path: &ir.StringMatch{Type: ir.Prefix, Value: "/"}}
		ic.action(r, ing.Namespace, b, "defaultBackend", ix, problem)
		// After every path of every Ingress, "/" included.
		k := precedence{created: created, source: owner, pathRank: 1, pathLen: 0}
		ic.entries = append(ic.entries, routeEntry{key: k.withHost(""), route: r})
	}
	return problems
}

// ingressPath is the IR path match of an Ingress path: Exact, or Prefix for
// Prefix and ImplementationSpecific.
func ingressPath(p *networkingv1.HTTPIngressPath) (*ir.StringMatch, error) {
	v := p.Path
	if v == "" {
		v = "/"
	}
	if !strings.HasPrefix(v, "/") {
		return nil, fmt.Errorf("path %q does not start with /", v)
	}
	if p.PathType != nil && *p.PathType == networkingv1.PathTypeExact {
		return &ir.StringMatch{Type: ir.Exact, Value: v}, nil
	}
	if len(v) > 1 {
		v = strings.TrimRight(v, "/")
		if v == "" {
			v = "/"
		}
	}
	return &ir.StringMatch{Type: ir.Prefix, Value: v}, nil
}

// action points an Ingress route at its backend Service, or answers 500
// when the backend cannot be used.
func (ic *ingressClass) action(r *ir.HTTPRoute, ns string, b *networkingv1.IngressBackend, where string, ix *index, problem func(string, ...any)) {
	c, err := ingressBackend(ns, b, ix)
	if err != nil {
		problem("%s: %v", where, err)
		r.DirectResponse = &ir.DirectResponse{Status: 500}
		return
	}
	ic.clusters[c.Name] = c
	r.Backends = []*ir.Backend{{Cluster: c.Name, Weight: 1}}
}

func ingressBackend(ns string, b *networkingv1.IngressBackend, ix *index) (*ir.Cluster, error) {
	if b.Service == nil {
		return nil, fmt.Errorf("resource backends are not supported; use a Service")
	}
	svc := ix.services[nn{ns, b.Service.Name}]
	if svc == nil {
		return nil, fmt.Errorf("no Service %s/%s", ns, b.Service.Name)
	}
	var port *corev1.ServicePort
	for i := range svc.Spec.Ports {
		sp := &svc.Spec.Ports[i]
		if sp.Protocol == corev1.ProtocolUDP || sp.Protocol == corev1.ProtocolSCTP {
			continue
		}
		if (b.Service.Port.Name != "" && sp.Name == b.Service.Port.Name) || (b.Service.Port.Name == "" && sp.Port == b.Service.Port.Number) {
			port = sp
			break
		}
	}
	if port == nil {
		return nil, fmt.Errorf("service %s/%s has no TCP port %s", ns, b.Service.Name, ingressPortString(b.Service.Port))
	}
	protocol, err := clusterProtocol(port.AppProtocol, false)
	if err != nil {
		return nil, fmt.Errorf("service %s/%s port %d: %w", ns, b.Service.Name, port.Port, err)
	}
	return ix.cluster(ns, b.Service.Name, port, protocol), nil
}

func ingressPortString(p networkingv1.ServiceBackendPort) string {
	if p.Name != "" {
		return strconv.Quote(p.Name)
	}
	return strconv.Itoa(int(p.Number))
}

// group is the class's IR: HTTP on 80 and, when any certificate resolved,
// HTTPS on 443 with the same routes.
func (ic *ingressClass) group() *ir.Group {
	g := &ir.Group{Name: "ingress/" + ic.name, Clusters: sortedClusters(ic.clusters)}
	routes := sortRoutes(ic.entries, false)
	g.HTTP = append(g.HTTP, &ir.HTTPListener{Name: "ingress/" + ic.name + "/http", Port: ingressHTTPPort, Routes: routes})
	if len(ic.certs) > 0 {
		tls := &ir.TLS{}
		for _, c := range ic.certs {
			tls.Certificates = append(tls.Certificates, c)
		}
		sort.Slice(tls.Certificates, func(i, j int) bool { return tls.Certificates[i].Name < tls.Certificates[j].Name })
		g.HTTP = append(g.HTTP, &ir.HTTPListener{Name: "ingress/" + ic.name + "/https", Port: ingressHTTPSPort, TLS: tls,
			Routes: append([]*ir.HTTPRoute(nil), routes...)})
	}
	return g
}
