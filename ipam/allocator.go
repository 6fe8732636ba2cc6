package ipam

import (
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// Allocator holds the pools and every Service's addresses. It is not safe for
// concurrent use; the controller serializes calls.
type Allocator struct {
	pools     []*compiled // in automatic-assignment order
	byName    map[string]*compiled
	conflicts map[string][]string
	reserved  []Reservation

	services map[string]*holding
	// byAddr lists the Services holding each address.
	byAddr map[netip.Addr][]string
	// shared indexes addresses by sharing key, for joining Services.
	shared map[string]map[netip.Addr]struct{}
}

// holding is one Service's addresses and what sharing needs to know of it.
type holding struct {
	// pool is the pool the Service asked for when it got its addresses.
	pool       string
	namespace  string
	sharingKey string
	shareWith  []string
	ports      []Port
	local      bool
	selector   string
	ips        []Assigned
}

// New returns an allocator with no pools.
func New() *Allocator {
	return &Allocator{
		byName:   map[string]*compiled{},
		services: map[string]*holding{},
		byAddr:   map[netip.Addr][]string{},
		shared:   map[string]map[netip.Addr]struct{}{},
	}
}

// SetConfig replaces the pools and reservations. No assignment moves: an
// address that left every pool stays with its Service, and Assign reports it.
func (a *Allocator) SetConfig(cfg Config) error {
	if err := validatePools(cfg.Pools); err != nil {
		return err
	}
	a.pools, a.conflicts = compile(cfg)
	a.byName = make(map[string]*compiled, len(a.pools))
	for _, p := range a.pools {
		a.byName[p.Name] = p
	}
	a.reserved = append([]Reservation(nil), cfg.Reserved...)
	for _, h := range a.services {
		for i := range h.ips {
			h.ips[i].Pool = a.attribute(h.ips[i].Addr, h.ips[i].Pool)
		}
	}
	return nil
}

// attribute names the pool an address counts against: the one it came from
// if that still holds it, else the first pool that does.
func (a *Allocator) attribute(addr netip.Addr, was string) string {
	if p := a.byName[was]; p != nil && p.contains(addr) {
		return was
	}
	for _, p := range a.pools {
		if p.contains(addr) {
			return p.Name
		}
	}
	return ""
}

// Assigned returns the Service's addresses.
func (a *Allocator) Assigned(key string) []Assigned {
	if h := a.services[key]; h != nil {
		return slices.Clone(h.ips)
	}
	return nil
}

// Holders lists the Services holding addr.
func (a *Allocator) Holders(addr netip.Addr) []string { return slices.Clone(a.byAddr[addr]) }

// Restore records addresses a Service already holds (from its status), at
// start-up, before any new assignment. It checks nothing about pools: a
// Service keeps what it has. It refuses, recording nothing, when another
// Service holds one of the addresses and sharing does not allow both.
func (a *Allocator) Restore(req Request, addrs []netip.Addr) error {
	a.Release(req.Key)
	seen := map[Family]bool{}
	for _, addr := range addrs {
		f := FamilyOf(addr)
		if seen[f] {
			return errorf(ReasonInvalidRequest, "status holds more than one %v address", f)
		}
		seen[f] = true
		if err := a.canShare(addr, &req); err != nil {
			return errorf(ReasonDuplicate, "address %v is also held by %s (%s); Berth does not move either: delete one Service or change its address", addr, a.holderFor(err.holder, &req), err.why)
		}
	}
	ips := make([]Assigned, len(addrs))
	for i, addr := range addrs {
		ips[i] = Assigned{Addr: addr, Pool: a.attribute(addr, "")}
	}
	a.record(&req, ips)
	return nil
}

// Result is the outcome of Assign.
type Result struct {
	IPs []Assigned
	// Changed is true when the addresses differ from before the call.
	Changed bool
	// Released lists the addresses the Service held before and gave up.
	Released []netip.Addr
	Warnings []Warning
}

// Assign gives the Service the addresses its request calls for. Addresses it
// already holds are kept whenever they still meet the request. When the
// request cannot be met the Service ends up with no address, never another.
func (a *Allocator) Assign(req Request) (Result, error) {
	before := a.Assigned(req.Key)
	res, err := a.assign(&req, before)
	if err != nil {
		a.Release(req.Key)
		return Result{Changed: len(before) > 0, Released: addrsOf(before)}, err
	}
	res.Changed = !slices.Equal(before, res.IPs)
	for _, b := range before {
		if !slices.ContainsFunc(res.IPs, func(x Assigned) bool { return x.Addr == b.Addr }) {
			res.Released = append(res.Released, b.Addr)
		}
	}
	return res, nil
}

func addrsOf(as []Assigned) []netip.Addr {
	out := make([]netip.Addr, len(as))
	for i, x := range as {
		out[i] = x.Addr
	}
	return out
}

func (a *Allocator) assign(req *Request, cur []Assigned) (Result, error) {
	fams, err := wantedFamilies(req)
	if err != nil {
		return Result{}, err
	}
	var res Result
	var errs []*Error
	for _, f := range fams {
		if kept, warn, ok := a.keep(req, cur, f); ok {
			res.IPs = append(res.IPs, kept)
			if warn != nil {
				res.Warnings = append(res.Warnings, *warn)
			}
			continue
		}
		got, perr := a.pick(req, f)
		if perr != nil {
			errs = append(errs, perr)
			continue
		}
		res.IPs = append(res.IPs, got)
	}
	if len(errs) > 0 && (req.Policy == RequireDualStack || len(res.IPs) == 0) {
		if len(fams) == 2 && req.Policy == RequireDualStack {
			msgs := make([]string, len(errs))
			for i, e := range errs {
				msgs[i] = e.Message
			}
			return Result{}, errorf(ReasonDualStack, "RequireDualStack needs both families: %s", strings.Join(msgs, "; "))
		}
		return Result{}, errs[0]
	}
	for _, e := range errs {
		res.Warnings = append(res.Warnings, Warning{Reason: ReasonPartialDual, Message: "PreferDualStack: only one family assigned: " + e.Message})
	}
	a.record(req, res.IPs)
	return res, nil
}

// keep decides whether the Service keeps the address of family f it holds.
// It moves only when its own request changed (another address or pool asked
// for, or a port that now collides with a sharer). An address that pool edits
// or label changes left outside every pool the Service may use stays, with a
// warning: clients may be using it, so the operator decides.
func (a *Allocator) keep(req *Request, cur []Assigned, f Family) (Assigned, *Warning, bool) {
	var have Assigned
	for _, c := range cur {
		if FamilyOf(c.Addr) == f {
			have = c
		}
	}
	if !have.Addr.IsValid() {
		return Assigned{}, nil, false
	}
	if want, ok := req.requested(f); ok && want != have.Addr {
		return Assigned{}, nil, false
	}
	if a.canShare(have.Addr, req) != nil {
		return Assigned{}, nil, false
	}
	// Asking for another pool than before is the Service's own change.
	if h := a.services[req.Key]; req.Pool != "" && (h == nil || h.pool != req.Pool) {
		if p := a.byName[req.Pool]; p == nil || !p.contains(have.Addr) {
			return Assigned{}, nil, false
		}
	}
	var warn *Warning
	if why := a.reservedBy(have.Addr); why != "" {
		warn = &Warning{Reason: ReasonReservedAddress, Message: fmt.Sprintf("address %v is inside %s; it is kept, but no pool would hand it out now", have.Addr, why)}
	}
	// Keep counting it against the pool it came from while that pool still
	// holds it and serves this Service.
	if was := a.byName[have.Pool]; was != nil && a.serves(was, req, have.Addr) {
		return have, warn, true
	}
	var in []string
	for _, p := range a.pools {
		if !p.contains(have.Addr) {
			continue
		}
		if a.serves(p, req, have.Addr) {
			return Assigned{Addr: have.Addr, Pool: p.Name}, warn, true
		}
		in = append(in, p.Name)
	}
	msg := fmt.Sprintf("address %v is no longer in any IPPool", have.Addr)
	if len(in) > 0 {
		msg = fmt.Sprintf("address %v is in pool(s) %s, which no longer serve this Service", have.Addr, strings.Join(in, ", "))
	}
	return Assigned{Addr: have.Addr}, &Warning{
		Reason:  ReasonOutsidePools,
		Message: msg + "; the Service keeps it until you release it (see docs/ipam.md)",
	}, true
}

// serves reports whether pool p may give addr to the Service.
func (a *Allocator) serves(p *compiled, req *Request, addr netip.Addr) bool {
	return p.contains(addr) && p.allows(req) && (req.Pool == "" || req.Pool == p.Name)
}

// pick finds a new address of family f for the Service.
func (a *Allocator) pick(req *Request, f Family) (Assigned, *Error) {
	if want, ok := req.requested(f); ok {
		return a.pickRequested(req, want)
	}
	var cands []*compiled
	if req.Pool != "" {
		p := a.byName[req.Pool]
		if p == nil {
			return Assigned{}, errorf(ReasonUnknownPool, "pool %q does not exist", req.Pool)
		}
		if !p.allows(req) {
			return Assigned{}, errorf(ReasonPoolNotAllowed, "pool %s does not serve Services in namespace %s with these labels", p.Name, req.Namespace)
		}
		if !p.hasFamily(f) {
			return Assigned{}, errorf(ReasonNoPool, "pool %s has no %v addresses", p.Name, f)
		}
		cands = []*compiled{p}
	} else {
		for _, p := range a.pools {
			if p.AutoAssign && p.hasFamily(f) && p.allows(req) {
				cands = append(cands, p)
			}
		}
		if len(cands) == 0 {
			return Assigned{}, errorf(ReasonNoPool, "no IPPool with %v addresses assigns automatically to Services in namespace %s with these labels", f, req.Namespace)
		}
	}
	if req.SharingKey != "" {
		if got, ok := a.joinShared(req, f, cands); ok {
			return got, nil
		}
	}
	for _, p := range cands {
		if addr, ok := a.firstFree(p, f); ok {
			return Assigned{Addr: addr, Pool: p.Name}, nil
		}
	}
	names := make([]string, len(cands))
	for i, p := range cands {
		names[i] = p.Name
	}
	return Assigned{}, errorf(ReasonPoolExhausted, "no free %v address in pool(s) %s", f, strings.Join(names, ", "))
}

func (a *Allocator) pickRequested(req *Request, want netip.Addr) (Assigned, *Error) {
	if why := a.reservedBy(want); why != "" {
		return Assigned{}, errorf(ReasonIPReserved, "requested address %v is inside %s", want, why)
	}
	var in []*compiled
	for _, p := range a.pools {
		if p.contains(want) {
			in = append(in, p)
		}
	}
	if len(in) == 0 {
		return Assigned{}, errorf(ReasonIPNotInPool, "requested address %v is in no IPPool", want)
	}
	if req.Pool != "" && a.byName[req.Pool] == nil {
		return Assigned{}, errorf(ReasonUnknownPool, "pool %q does not exist", req.Pool)
	}
	var pool *compiled
	for _, p := range in {
		if a.serves(p, req, want) {
			pool = p
			break
		}
	}
	if pool == nil {
		return Assigned{}, errorf(ReasonPoolNotAllowed, "requested address %v is in pool %s, which does not serve this Service", want, in[0].Name)
	}
	if pool.AvoidBuggyIPs && buggy(want) {
		return Assigned{}, errorf(ReasonIPNotInPool, "requested address %v ends in .0 or .255, which pool %s avoids", want, pool.Name)
	}
	if err := a.canShare(want, req); err != nil {
		return Assigned{}, errorf(ReasonIPInUse, "requested address %v is held by %s: %s", want, a.holderFor(err.holder, req), err.why)
	}
	return Assigned{Addr: want, Pool: pool.Name}, nil
}

// joinShared finds an address already used under the Service's sharing key,
// in one of the candidate pools, that it may share.
func (a *Allocator) joinShared(req *Request, f Family, cands []*compiled) (Assigned, bool) {
	addrs := make([]netip.Addr, 0, len(a.shared[req.SharingKey]))
	for addr := range a.shared[req.SharingKey] {
		if FamilyOf(addr) == f {
			addrs = append(addrs, addr)
		}
	}
	sort.Slice(addrs, func(i, j int) bool { return addrs[i].Less(addrs[j]) })
	for _, p := range cands {
		for _, addr := range addrs {
			if p.contains(addr) && a.canShare(addr, req) == nil {
				return Assigned{Addr: addr, Pool: p.Name}, true
			}
		}
	}
	return Assigned{}, false
}

// firstFree returns the lowest free address of family f in pool p. Each
// range keeps a hint below which nothing is free, so filling a pool in order
// costs one step per address, not a scan from the start each time.
func (a *Allocator) firstFree(p *compiled, f Family) (netip.Addr, bool) {
	for i, r := range p.ranges {
		if r.Family() != f || !p.hint[i].IsValid() {
			continue
		}
		for addr := p.hint[i]; addr.IsValid() && addr.Compare(r.Last) <= 0; addr = addr.Next() {
			if len(a.byAddr[addr]) > 0 || (p.AvoidBuggyIPs && buggy(addr)) || a.reservedBy(addr) != "" {
				continue
			}
			p.hint[i] = addr
			return addr, true
		}
		p.hint[i] = netip.Addr{} // full until something is released
	}
	return netip.Addr{}, false
}

func (a *Allocator) reservedBy(addr netip.Addr) string {
	for _, r := range a.reserved {
		if r.Range.Contains(addr) {
			return r.Why
		}
	}
	return ""
}

// Release frees every address of the Service and returns them.
func (a *Allocator) Release(key string) []netip.Addr {
	h := a.services[key]
	if h == nil {
		return nil
	}
	delete(a.services, key)
	out := make([]netip.Addr, 0, len(h.ips))
	for _, ip := range h.ips {
		out = append(out, ip.Addr)
		holders := slices.DeleteFunc(a.byAddr[ip.Addr], func(k string) bool { return k == key })
		if len(holders) > 0 {
			a.byAddr[ip.Addr] = holders
			continue
		}
		delete(a.byAddr, ip.Addr)
		if h.sharingKey != "" {
			delete(a.shared[h.sharingKey], ip.Addr)
			if len(a.shared[h.sharingKey]) == 0 {
				delete(a.shared, h.sharingKey)
			}
		}
		for _, p := range a.pools {
			for i, r := range p.ranges {
				if r.Contains(ip.Addr) && (!p.hint[i].IsValid() || ip.Addr.Less(p.hint[i])) {
					p.hint[i] = ip.Addr
				}
			}
		}
	}
	return out
}

func (a *Allocator) record(req *Request, ips []Assigned) {
	a.Release(req.Key)
	h := &holding{pool: req.Pool, namespace: req.Namespace, sharingKey: req.SharingKey, shareWith: slices.Clone(req.ShareWithNamespaces),
		ports: slices.Clone(req.Ports), local: req.Local, selector: req.Selector, ips: slices.Clone(ips)}
	a.services[req.Key] = h
	for _, ip := range ips {
		a.byAddr[ip.Addr] = append(a.byAddr[ip.Addr], req.Key)
		if req.SharingKey != "" {
			if a.shared[req.SharingKey] == nil {
				a.shared[req.SharingKey] = map[netip.Addr]struct{}{}
			}
			a.shared[req.SharingKey][ip.Addr] = struct{}{}
		}
	}
}

// shareError names the Service in the way and why.
type shareError struct {
	holder string
	why    string
}

// canShare reports whether the Service may hold addr beside its current
// holders: all share one non-empty key, no protocol/port is used twice, and
// either all use externalTrafficPolicy Cluster or all use Local with the same
// pod selector (a Local address must lead to the same pods whichever Service
// a packet is for).
func (a *Allocator) canShare(addr netip.Addr, req *Request) *shareError {
	for _, k := range a.byAddr[addr] {
		if k == req.Key {
			continue
		}
		h := a.services[k]
		if err := compatible(h, req); err != "" {
			return &shareError{holder: k, why: err}
		}
	}
	return nil
}

func compatible(h *holding, req *Request) string {
	if req.SharingKey == "" || h.sharingKey != req.SharingKey {
		return "the Services do not carry the same berth.dev/allow-shared-ip key"
	}
	if h.namespace != req.Namespace && !(allowsNamespace(h.shareWith, req.Namespace) && allowsNamespace(req.ShareWithNamespaces, h.namespace)) {
		return "the Services are in different namespaces, and sharing across namespaces needs both to list the other's in berth.dev/allow-shared-ip-namespaces"
	}
	for _, p := range req.Ports {
		for _, q := range h.ports {
			if p == q {
				return fmt.Sprintf("both use %s port %d", p.Protocol, p.Port)
			}
		}
	}
	if h.local || req.Local {
		if !(h.local && req.Local) {
			return "externalTrafficPolicy Local and Cluster Services cannot share an address"
		}
		if h.selector != req.Selector {
			return "externalTrafficPolicy Local Services share an address only with the same pod selector"
		}
	}
	return ""
}

// Reports returns each pool's conflicts and usage, sorted by pool name.
func (a *Allocator) Reports() []PoolReport {
	out := make([]PoolReport, 0, len(a.pools))
	for _, p := range a.pools {
		r := PoolReport{Name: p.Name, Conflicts: slices.Clone(a.conflicts[p.Name]), Usage: map[Family]Usage{}}
		inUse := map[Family]int64{}
		for addr := range a.byAddr {
			if p.contains(addr) {
				inUse[FamilyOf(addr)]++
			}
		}
		for f, c := range p.capacity {
			avail := new(big.Int).Sub(c, big.NewInt(inUse[f]))
			if avail.Sign() < 0 {
				avail.SetInt64(0)
			}
			r.Usage[f] = Usage{Capacity: new(big.Int).Set(c), InUse: inUse[f], Available: avail}
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Check verifies the allocator's invariants; tests call it after every step.
func (a *Allocator) Check() error {
	for key, h := range a.services {
		for _, ip := range h.ips {
			if !slices.Contains(a.byAddr[ip.Addr], key) {
				return fmt.Errorf("%s holds %v but the address index does not list it", key, ip.Addr)
			}
		}
	}
	for addr, keys := range a.byAddr {
		if len(keys) == 0 {
			return fmt.Errorf("address %v indexed with no holder", addr)
		}
		for i, k := range keys {
			h := a.services[k]
			if h == nil || !slices.ContainsFunc(h.ips, func(x Assigned) bool { return x.Addr == addr }) {
				return fmt.Errorf("address %v lists %s, which does not hold it", addr, k)
			}
			for _, other := range keys[i+1:] {
				o := a.services[other]
				req := Request{Key: other, Namespace: o.namespace, SharingKey: o.sharingKey, ShareWithNamespaces: o.shareWith, Ports: o.ports, Local: o.local, Selector: o.selector}
				if why := compatible(h, &req); why != "" {
					return fmt.Errorf("address %v is held by %s and %s, which may not share: %s", addr, k, other, why)
				}
			}
		}
	}
	return nil
}

// Describe is a pool's ranges, for messages.
func (a *Allocator) Describe(pool string) string {
	if p := a.byName[pool]; p != nil {
		return describe(p.ranges)
	}
	return ""
}

// allowsNamespace reports whether a Service's allow-shared-ip-namespaces
// list admits namespace ns.
func allowsNamespace(list []string, ns string) bool {
	return slices.Contains(list, ns) || slices.Contains(list, "*")
}

// holderFor names the Service holding an address to the Service req: by
// namespace and name when they are in one namespace, else only as "a
// Service in another namespace" (a tenant learns nothing of another's
// Services from its own Service's status).
func (a *Allocator) holderFor(holder string, req *Request) string {
	if h := a.services[holder]; h != nil && h.namespace != req.Namespace {
		return "a Service in another namespace"
	}
	return holder
}
