// Package bgp is Berth's BGP speaker: which peers a node talks to and what
// it advertises to each (Compile, pure), and the embedded GoBGP server
// that does it (Speaker).
package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
)

// Peer is one BGP neighbour as a node runs it.
type Peer struct {
	Name string
	// UID is the BGPPeer object's: a new object of the same name and
	// address is a new session, with none of the old one's errors.
	UID      string
	Labels   map[string]string
	Address  netip.Addr
	Port     uint16
	PeerASN  uint32
	LocalASN uint32
	// HoldTime and Keepalive: nil takes the defaults (90 s, and a third
	// of the hold time); unset and zero differ, as in the BGPPeer. A zero
	// hold time (no hold timer, no keepalives) is refused: GoBGP's
	// AddPeer replaces it by 90 s (see Peer.Check).
	HoldTime, Keepalive *time.Duration
	// Password is the TCP MD5 key ("" none).
	Password     string
	EBGPMultihop bool
	// MultihopTTL is the TTL of an eBGP session's packets (0: 255 with
	// EBGPMultihop, else 1); setting it turns multihop on.
	MultihopTTL uint8
	// TTLSecurityHops turns GTSM (RFC 5082) on: packets leave with TTL
	// 255 and those arriving with less than 256 minus it are dropped (0:
	// off).
	TTLSecurityHops uint8
	// ConnectRetry is the wait between connection attempts (0: 2 s,
	// GoBGP's least).
	ConnectRetry time.Duration
	// IdleHold is how long the speaker keeps a peer Idle after its
	// session went down before it connects again (GoBGP's own 5 s is
	// skipped; see Speaker.sessionLost).
	IdleHold        time.Duration
	GracefulRestart bool
	RestartTime     time.Duration
	// NodeSelector picks the nodes that peer (nil: every node).
	NodeSelector labels.Selector
	// Source is the local address to connect from (invalid: the
	// kernel's choice).
	Source netip.Addr
	// AllowOwnAS accepts paths that carry the node's own AS: in pod
	// network mode bgp, the other nodes' ranges come back through the
	// router with it.
	AllowOwnAS bool
	// MaxPrefixes is the most prefixes accepted in the session (0: no
	// limit): one more and the session is closed with a Cease, maximum
	// number of prefixes reached (RFC 4486), and left down until the
	// limit changes.
	MaxPrefixes uint32
}

// Key is what, when it changes, needs the session to be made again; the
// rest of a peer's settings never reset a session.
func (p *Peer) Key() string {
	return fmt.Sprint(p.UID, p.Address, p.Port, p.PeerASN, p.LocalASN, durKey(p.HoldTime), durKey(p.Keepalive), p.Password,
		p.EBGPMultihop, p.GracefulRestart, p.RestartTime, p.Source, p.AllowOwnAS, p.MaxPrefixes,
		p.MultihopTTL, p.TTLSecurityHops, p.ConnectRetry)
}

// DefaultConnectRetry is the wait between connection attempts of a peer
// that sets none: GoBGP's least, so a restarted router is connected to
// again within it.
const DefaultConnectRetry = 2 * time.Second

// Retry is the wait between connection attempts the speaker runs.
func (p *Peer) Retry() time.Duration {
	if p.ConnectRetry == 0 {
		return DefaultConnectRetry
	}
	return p.ConnectRetry
}

// TTL is what the session's packets leave with and the least TTL taken
// from the router (0: the kernel's choice, no check).
func (p *Peer) TTL() (out, min uint8) {
	switch {
	case p.TTLSecurityHops > 0:
		return 255, uint8(256 - int(p.TTLSecurityHops))
	case p.MultihopTTL > 0:
		return p.MultihopTTL, 0
	case p.EBGPMultihop:
		return 255, 0
	}
	return 0, 0
}

func durKey(d *time.Duration) string {
	if d == nil {
		return "default"
	}
	return d.String()
}

// DefaultHoldTime is the hold time of a peer that sets none (RFC 4271's
// suggestion, and GoBGP's, FRR's datacenter profile aside).
const DefaultHoldTime = 90 * time.Second

// Timers are the hold time and keepalive interval the speaker offers the
// peer: the given ones, or the defaults (90 s, and a third of the hold
// time).
func (p *Peer) Timers() (hold, keepalive time.Duration) {
	hold = DefaultHoldTime
	if p.HoldTime != nil {
		hold = *p.HoldTime
	}
	// Whole seconds, as the wire has them, and at least one.
	keepalive = max((hold / 3).Truncate(time.Second), time.Second)
	if p.Keepalive != nil {
		keepalive = *p.Keepalive
	}
	return hold, keepalive
}

// Check says what the speaker cannot run of the peer's settings.
func (p *Peer) Check() error {
	hold, ka := p.Timers()
	switch {
	case hold == 0:
		// GoBGP v4 (to 4.9 at least) refills a zero hold time with 90 s
		// in AddPeer (pkg/config/oc/default.go), so the session would
		// run with a hold timer the operator turned off.
		return fmt.Errorf("holdTime 0s (no hold timer, no keepalives) cannot be run by the embedded speaker: GoBGP turns it into 90s; set holdTime from 3s to 65535s, or leave it unset for 90s")
	case hold < 3*time.Second || hold > 65535*time.Second || hold%time.Second != 0:
		return fmt.Errorf("holdTime %s: use whole seconds from 3s to 65535s", hold)
	case ka <= 0:
		return fmt.Errorf("keepaliveTime %s: a keepalive interval of 0s means no keepalives, which needs holdTime 0s; set it below holdTime (usually a third) or leave it unset", ka)
	case ka >= hold:
		return fmt.Errorf("keepaliveTime %s must be less than holdTime %s (usually a third of it)", ka, hold)
	case ka%time.Second != 0:
		return fmt.Errorf("keepaliveTime %s: use whole seconds", ka)
	case p.TTLSecurityHops > 0 && (p.EBGPMultihop || p.MultihopTTL > 0):
		return fmt.Errorf("ttlSecurityHops and ebgpMultiHop/ebgpMultiHopTTL cannot both be set: GTSM sends TTL 255 itself; keep ttlSecurityHops alone")
	case p.TTLSecurityHops > 254:
		return fmt.Errorf("ttlSecurityHops %d: use 1 (directly connected) to 254", p.TTLSecurityHops)
	case p.ConnectRetry != 0 && (p.ConnectRetry < 2*time.Second || p.ConnectRetry > time.Hour || p.ConnectRetry%time.Second != 0):
		return fmt.Errorf("connectRetryTime %s: use whole seconds from 2s (the embedded speaker's least) to 3600s", p.ConnectRetry)
	case p.IdleHold < 0 || p.IdleHold > time.Hour || p.IdleHold%time.Second != 0:
		return fmt.Errorf("idleHoldTime %s: use whole seconds from 0s to 3600s", p.IdleHold)
	}
	return nil
}

// Announcement is one BGPAnnouncement, compiled.
type Announcement struct {
	Name  string
	Pools []string
	// PeerSelectors and NodeSelectors: any one matching is enough; none:
	// every peer, every node.
	PeerSelectors    []labels.Selector
	NodeSelectors    []labels.Selector
	Communities      []uint32
	LargeCommunities [][3]uint32
	LocalPref        *uint32
	// AggregationLength4 and 6 widen the advertised prefix (32 and 128:
	// the address alone).
	AggregationLength4, AggregationLength6 int
}

// Address is one LoadBalancer address Berth assigned.
type Address struct {
	Addr     netip.Addr
	Pool     string
	Services []string
	// Local is nil unless every Service on it has policy Local; then the
	// nodes with a ready endpoint of every one.
	Local map[string]bool
}

// Node is what the plan needs to know of this node.
type Node struct {
	Name   string
	Labels map[string]string
	// Addrs are its InternalIPs: the next hop it advertises, per family.
	Addrs []netip.Addr
	// Excluded: labelled node.kubernetes.io/exclude-from-external-load-balancers.
	Excluded bool
	// PodCIDRs are advertised when the pod network runs over BGP.
	PodCIDRs []netip.Prefix
}

// Attrs are the path attributes a prefix goes to a peer with.
type Attrs struct {
	Communities      []uint32
	LargeCommunities [][3]uint32
	LocalPref        *uint32
}

func (a Attrs) key() string {
	lp := "-"
	if a.LocalPref != nil {
		lp = fmt.Sprint(*a.LocalPref)
	}
	return fmt.Sprint(a.Communities, a.LargeCommunities, lp)
}

// Export is a prefix to one peer.
type Export struct {
	Prefix netip.Prefix
	Attrs  Attrs
}

// Plan is what one node runs: its peers, and per peer what it advertises.
type Plan struct {
	Peers []*Peer
	// Exports maps a peer's name to its prefixes, sorted.
	Exports map[string][]Export
	// NextHop is the node's address per family (invalid: none).
	NextHop4, NextHop6 netip.Addr
	// PodRanges are every node's pod ranges with their owners (pod
	// network mode bgp): a learned route inside one is accepted only
	// when it is the range itself with the owner's address as next hop.
	PodRanges []PodRange
}

// PodRange is one node's pod range and that node's addresses, the only
// next hops a route to it may have.
type PodRange struct {
	Prefix netip.Prefix
	Node   string
	Addrs  []netip.Addr
}

// Prefixes lists every prefix of the plan, sorted.
func (p *Plan) Prefixes() []netip.Prefix {
	seen := map[netip.Prefix]bool{}
	var out []netip.Prefix
	for _, ex := range p.Exports {
		for _, e := range ex {
			if !seen[e.Prefix] {
				seen[e.Prefix] = true
				out = append(out, e.Prefix)
			}
		}
	}
	sortPrefixes(out)
	return out
}

func sortPrefixes(ps []netip.Prefix) {
	sort.Slice(ps, func(i, j int) bool {
		if c := ps[i].Addr().Compare(ps[j].Addr()); c != 0 {
			return c < 0
		}
		return ps[i].Bits() < ps[j].Bits()
	})
}

// ExcludeLabel keeps a node out of external load balancing.
const ExcludeLabel = "node.kubernetes.io/exclude-from-external-load-balancers"

// Compile is the whole decision for one node: the peers whose node
// selector takes it, and for each the prefixes of the addresses the
// announcements covering their pools send to that peer from this node
// (selected by the announcement's node selectors; with policy Local only
// while the node holds a ready endpoint), aggregated as the announcement
// says, with the announcements' attributes merged when several cover one
// prefix. podCIDRs, when set, go to every peer of the node too.
func Compile(self Node, peers []*Peer, anns []*Announcement, addrs []*Address, advertisePodCIDRs bool) Plan {
	plan := Plan{Exports: map[string][]Export{}}
	for _, a := range self.Addrs {
		if a.Is4() && !plan.NextHop4.IsValid() {
			plan.NextHop4 = a
		}
		if a.Is6() && !a.IsLinkLocalUnicast() && !plan.NextHop6.IsValid() {
			plan.NextHop6 = a
		}
	}
	set := labels.Set(self.Labels)
	for _, p := range peers {
		if p.NodeSelector == nil || p.NodeSelector.Matches(set) {
			if advertisePodCIDRs {
				c := *p
				c.AllowOwnAS = true
				p = &c
			}
			plan.Peers = append(plan.Peers, p)
		}
	}
	sort.Slice(plan.Peers, func(i, j int) bool { return plan.Peers[i].Name < plan.Peers[j].Name })

	type key struct {
		peer   string
		prefix netip.Prefix
	}
	merged := map[key]*Attrs{}
	var order []key
	add := func(peer string, prefix netip.Prefix, an *Announcement) {
		k := key{peer, prefix}
		at := merged[k]
		if at == nil {
			at = &Attrs{}
			merged[k] = at
			order = append(order, k)
		}
		if an == nil {
			return
		}
		for _, c := range an.Communities {
			if !slices.Contains(at.Communities, c) {
				at.Communities = append(at.Communities, c)
			}
		}
		for _, c := range an.LargeCommunities {
			if !slices.Contains(at.LargeCommunities, c) {
				at.LargeCommunities = append(at.LargeCommunities, c)
			}
		}
		if an.LocalPref != nil && (at.LocalPref == nil || *an.LocalPref > *at.LocalPref) {
			v := *an.LocalPref
			at.LocalPref = &v
		}
	}
	if !self.Excluded {
		for _, ad := range addrs {
			if ad.Local != nil && !ad.Local[self.Name] {
				continue
			}
			if ad.Addr.Is4() && !plan.NextHop4.IsValid() || ad.Addr.Is6() && !plan.NextHop6.IsValid() {
				continue // no next hop of that family
			}
			for _, an := range anns {
				if !slices.Contains(an.Pools, ad.Pool) || !anySelects(an.NodeSelectors, set) {
					continue
				}
				bits := an.AggregationLength4
				if ad.Addr.Is6() {
					bits = an.AggregationLength6
				}
				prefix, err := ad.Addr.Prefix(bits)
				if err != nil {
					continue
				}
				for _, p := range plan.Peers {
					if anySelects(an.PeerSelectors, labels.Set(p.Labels)) && p.Address.Is4() == ad.Addr.Is4() {
						add(p.Name, prefix, an)
					}
				}
			}
		}
	}
	if advertisePodCIDRs {
		for _, c := range self.PodCIDRs {
			for _, p := range plan.Peers {
				if p.Address.Is4() == c.Addr().Is4() {
					add(p.Name, c, nil)
				}
			}
		}
	}
	for _, k := range order {
		at := merged[k]
		slices.Sort(at.Communities)
		slices.SortFunc(at.LargeCommunities, func(a, b [3]uint32) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
		plan.Exports[k.peer] = append(plan.Exports[k.peer], Export{Prefix: k.prefix, Attrs: *at})
	}
	for _, ex := range plan.Exports {
		sort.Slice(ex, func(i, j int) bool {
			a, b := ex[i].Prefix, ex[j].Prefix
			if c := a.Addr().Compare(b.Addr()); c != 0 {
				return c < 0
			}
			return a.Bits() < b.Bits()
		})
	}
	return plan
}

func anySelects(sel []labels.Selector, set labels.Set) bool {
	if len(sel) == 0 {
		return true
	}
	for _, s := range sel {
		if s.Matches(set) {
			return true
		}
	}
	return false
}
