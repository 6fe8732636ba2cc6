package gatewayapi

import (
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Group names of the kinds references use.
const (
	gatewayGroup = gwv1.GroupName
	coreGroup    = ""
)

// ref is one cross-namespace reference to check against ReferenceGrants.
type ref struct {
	fromGroup, fromKind, fromNS   string
	toGroup, toKind, toNS, toName string
}

// permitted reports whether a reference may cross namespaces: always within
// one namespace, otherwise only when a ReferenceGrant in the target
// namespace allows the source kind and namespace to reach the target kind
// (and name, when the grant names one).
func (ix *index) permitted(r ref) bool {
	if r.fromNS == r.toNS {
		return true
	}
	for _, g := range ix.grants[r.toNS] {
		from := false
		for _, f := range g.Spec.From {
			if string(f.Group) == r.fromGroup && string(f.Kind) == r.fromKind && string(f.Namespace) == r.fromNS {
				from = true
				break
			}
		}
		if !from {
			continue
		}
		for _, t := range g.Spec.To {
			if string(t.Group) == r.toGroup && string(t.Kind) == r.toKind && (t.Name == nil || *t.Name == "" || string(*t.Name) == r.toName) {
				return true
			}
		}
	}
	return false
}
