package ipam

import (
	"fmt"
	"net/netip"
)

// Policy is a Service's ipFamilyPolicy.
type Policy int

// The three policies of spec.ipFamilyPolicy.
const (
	SingleStack Policy = iota
	PreferDualStack
	RequireDualStack
)

// Port is one port a Service exposes.
type Port struct {
	Protocol string
	Port     int32
}

// Request is what one Service asks of the allocator.
type Request struct {
	// Key identifies the Service: "namespace/name".
	Key             string
	Namespace       string
	Labels          map[string]string
	NamespaceLabels map[string]string
	// Families is spec.ipFamilies, in order; Policy is spec.ipFamilyPolicy.
	Families []Family
	Policy   Policy
	// IPs are specific addresses asked for (at most one per family).
	IPs []netip.Addr
	// Pool is a specific pool asked for.
	Pool string
	// SharingKey is the allow-shared-ip annotation; empty: no sharing.
	// Keys are per namespace: Services of two namespaces share only when
	// each lists the other's in ShareWithNamespaces.
	SharingKey string
	// ShareWithNamespaces are the other namespaces whose Services may share
	// an address with this one under its key ("*": any); from the
	// allow-shared-ip-namespaces annotation.
	ShareWithNamespaces []string
	Ports               []Port
	// Local is externalTrafficPolicy: Local; Selector is the Service's pod
	// selector in a canonical form, compared for sharing Local Services.
	Local    bool
	Selector string
}

// Assigned is an address given to a Service and the pool it counts against
// (empty when the address is in no pool any more).
type Assigned struct {
	Addr netip.Addr
	Pool string
}

// Reasons, used as condition and event reasons.
const (
	ReasonInvalidRequest  = "InvalidRequest"
	ReasonUnknownPool     = "UnknownPool"
	ReasonPoolNotAllowed  = "PoolNotAllowed"
	ReasonNoPool          = "NoPoolForService"
	ReasonPoolExhausted   = "PoolExhausted"
	ReasonIPNotInPool     = "RequestedIPNotInPool"
	ReasonIPReserved      = "RequestedIPReserved"
	ReasonIPInUse         = "RequestedIPInUse"
	ReasonDualStack       = "DualStackUnavailable"
	ReasonDuplicate       = "DuplicateAddress"
	ReasonOutsidePools    = "AddressOutsidePools"
	ReasonPartialDual     = "PartialDualStack"
	ReasonReservedAddress = "AddressReserved"
)

// Error says why a request cannot be met.
type Error struct {
	Reason  string
	Message string
}

func (e *Error) Error() string { return e.Message }

func errorf(reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Warning is something an operator should look at about an assignment that
// stands: an address outside every pool, half of a dual-stack request.
type Warning struct {
	Reason  string
	Message string
}

// wantedFamilies says which families the Service gets addresses of.
func wantedFamilies(req *Request) ([]Family, error) {
	fams := req.Families
	if len(fams) == 0 {
		fams = []Family{IPv4}
	}
	if len(fams) > 2 || (len(fams) == 2 && fams[0] == fams[1]) {
		return nil, errorf(ReasonInvalidRequest, "ipFamilies %v: want one family, or one of each", fams)
	}
	if req.Policy == SingleStack {
		fams = fams[:1]
	}
	if req.Policy == RequireDualStack && len(fams) != 2 {
		return nil, errorf(ReasonInvalidRequest, "ipFamilyPolicy RequireDualStack needs both families in ipFamilies")
	}
	if len(req.IPs) == 0 {
		return fams, nil
	}
	// Asked-for addresses decide, within the Service's families.
	var out []Family
	for _, ip := range req.IPs {
		f := FamilyOf(ip)
		if !containsFamily(fams, f) {
			return nil, errorf(ReasonInvalidRequest, "requested address %v is %v, but the Service's ipFamilies are %v", ip, f, fams)
		}
		if containsFamily(out, f) {
			return nil, errorf(ReasonInvalidRequest, "more than one %v address requested; ask for at most one per family", f)
		}
		out = append(out, f)
	}
	if req.Policy == RequireDualStack && len(out) != 2 {
		return nil, errorf(ReasonInvalidRequest, "ipFamilyPolicy RequireDualStack with requested addresses needs one address per family")
	}
	// Keep the Service's family order.
	ordered := make([]Family, 0, len(out))
	for _, f := range fams {
		if containsFamily(out, f) {
			ordered = append(ordered, f)
		}
	}
	return ordered, nil
}

func containsFamily(fs []Family, f Family) bool {
	for _, x := range fs {
		if x == f {
			return true
		}
	}
	return false
}

func (req *Request) requested(f Family) (netip.Addr, bool) {
	for _, ip := range req.IPs {
		if FamilyOf(ip) == f {
			return ip, true
		}
	}
	return netip.Addr{}, false
}
