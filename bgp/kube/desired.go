// Package kube turns the API server's objects into the BGP speaker's input
// and writes each node's view of its sessions onto the BGPPeers.
package kube

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/bgp"
	ipamkube "github.com/berthnet/berth/ipam/kube"
)

// Objects is what the speaker's input is built from.
type Objects struct {
	Self          *corev1.Node
	Services      []corev1.Service
	Slices        []discoveryv1.EndpointSlice
	Pools         []v1alpha1.IPPool
	Peers         []v1alpha1.BGPPeer
	Announcements []v1alpha1.BGPAnnouncement
	// Secrets are those of the agent's namespace, by name.
	Secrets map[string]*corev1.Secret
	// ForbiddenSecrets are Secrets the agents may not read (not named in
	// their Role).
	ForbiddenSecrets map[string]bool
	ServeUnclassed   bool
	// PodCIDRs: advertise this node's pod ranges (pod network mode bgp).
	PodCIDRs bool
	// Nodes are every Node (Self among them), for their pod ranges: no
	// peer address may be inside one, and in pod network mode bgp a
	// learned route to one must have its node as next hop.
	Nodes []corev1.Node
	// ServiceCIDRs hold the cluster's Service ranges, where no peer
	// address may be either.
	ServiceCIDRs []networkingv1.ServiceCIDR
}

// Built is the speaker's input, and what was left out and why.
type Built struct {
	Plan bgp.Plan
	// Problems name the peers and announcements left out, by name.
	Problems map[string]string
	// Reasons hold the v1alpha1 reason of a problem that has one of its
	// own (v1alpha1.ReasonAddressInClusterRange); the others' is
	// v1alpha1.ReasonInvalidPeer.
	Reasons map[string]string
	// UIDs are the BGPPeers' object UIDs, by name.
	UIDs map[string]string
}

// PeerProblems are the BGPPeers' problems, by peer name.
func (b Built) PeerProblems() map[string]Problem {
	out := map[string]Problem{}
	for what, why := range b.Problems {
		if name, ok := strings.CutPrefix(what, "BGPPeer "); ok {
			reason := b.Reasons[what]
			if reason == "" {
				reason = v1alpha1.ReasonInvalidPeer
			}
			out[name] = Problem{Reason: reason, Message: why, UID: b.UIDs[name]}
		}
	}
	return out
}

// Build compiles the objects into this node's plan.
func Build(o Objects) Built {
	b := Built{Problems: map[string]string{}, Reasons: map[string]string{}, UIDs: map[string]string{}}
	if o.Self == nil {
		return b
	}
	ranges := clusterRanges(o)
	var peers []*bgp.Peer
	for i := range o.Peers {
		b.UIDs[o.Peers[i].Name] = string(o.Peers[i].UID)
		if ref := o.Peers[i].Spec.PasswordSecret; ref != nil && o.ForbiddenSecrets[ref.Name] {
			b.Problems["BGPPeer "+o.Peers[i].Name] = forbiddenSecret(ref.Name).Error()
			b.Reasons["BGPPeer "+o.Peers[i].Name] = ReasonPasswordSecretForbidden
			continue
		}
		p, err := peer(&o.Peers[i], o.Secrets)
		if err != nil {
			b.Problems["BGPPeer "+o.Peers[i].Name] = err.Error()
			continue
		}
		if err := checkAddress(p.Address, ranges); err != nil {
			b.Problems["BGPPeer "+o.Peers[i].Name] = err.Error()
			b.Reasons["BGPPeer "+o.Peers[i].Name] = v1alpha1.ReasonAddressInClusterRange
			continue
		}
		peers = append(peers, p)
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].Name < peers[j].Name })
	var anns []*bgp.Announcement
	for i := range o.Announcements {
		a, err := announcement(&o.Announcements[i], o.Pools)
		if err != nil {
			b.Problems["BGPAnnouncement "+o.Announcements[i].Name] = err.Error()
			continue
		}
		anns = append(anns, a)
	}
	sort.Slice(anns, func(i, j int) bool { return anns[i].Name < anns[j].Name })
	assigned, _ := ipamkube.AssignedAddresses(o.Services, o.Pools, o.Slices, o.ServeUnclassed)
	var addrs []*bgp.Address
	for _, a := range assigned {
		addrs = append(addrs, &bgp.Address{Addr: a.Addr, Pool: a.Pool, Services: a.Keys(), Local: a.Local})
	}
	self := bgp.Node{Name: o.Self.Name, Labels: o.Self.Labels}
	if _, ok := o.Self.Labels[bgp.ExcludeLabel]; ok {
		self.Excluded = true
	}
	for _, a := range o.Self.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				self.Addrs = append(self.Addrs, ip.Unmap())
			}
		}
	}
	for _, c := range o.Self.Spec.PodCIDRs {
		if p, err := netip.ParsePrefix(c); err == nil {
			self.PodCIDRs = append(self.PodCIDRs, p.Masked())
		}
	}
	b.Plan = bgp.Compile(self, peers, anns, addrs, o.PodCIDRs)
	if o.PodCIDRs {
		b.Plan.PodRanges = podRanges(o.Nodes)
	}
	// One session per address: of two peers of this node with one
	// address, the first by name runs and the other says why not.
	byAddr := map[netip.Addr]string{}
	kept := b.Plan.Peers[:0]
	for _, p := range b.Plan.Peers {
		if other, ok := byAddr[p.Address]; ok {
			b.Problems["BGPPeer "+p.Name] = fmt.Sprintf("address %s is BGPPeer %s's too, on this node: one session per router address; give the two different nodeSelectors, or delete one", p.Address, other)
			delete(b.Plan.Exports, p.Name)
			continue
		}
		byAddr[p.Address] = p.Name
		kept = append(kept, p)
	}
	b.Plan.Peers = kept
	return b
}

func peer(p *v1alpha1.BGPPeer, secrets map[string]*corev1.Secret) (*bgp.Peer, error) {
	addr, err := netip.ParseAddr(p.Spec.Address)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", p.Spec.Address, err)
	}
	out := &bgp.Peer{Name: p.Name, UID: string(p.UID), Labels: p.Labels, Address: addr.Unmap(), Port: uint16(p.Spec.Port),
		PeerASN: uint32(p.Spec.PeerASN), LocalASN: uint32(p.Spec.LocalASN), EBGPMultihop: p.Spec.EBGPMultiHop}
	if out.Port == 0 {
		out.Port = 179
	}
	// Unset and zero differ: unset takes the default, 0 is no limit.
	out.MaxPrefixes = DefaultMaxPrefixes
	if p.Spec.MaxPrefixes != nil {
		out.MaxPrefixes = uint32(*p.Spec.MaxPrefixes)
	}
	// Unset and zero differ: nil takes the speaker's defaults.
	if p.Spec.HoldTime != nil {
		d := p.Spec.HoldTime.Duration
		out.HoldTime = &d
	}
	if p.Spec.KeepaliveTime != nil {
		d := p.Spec.KeepaliveTime.Duration
		out.Keepalive = &d
	}
	if v := p.Spec.EBGPMultiHopTTL; v != nil {
		if *v < 1 || *v > 255 {
			return nil, fmt.Errorf("ebgpMultiHopTTL %d: use 1 to 255", *v)
		}
		out.MultihopTTL = uint8(*v)
	}
	if v := p.Spec.TTLSecurityHops; v != nil {
		if *v < 1 || *v > 254 {
			return nil, fmt.Errorf("ttlSecurityHops %d: use 1 (directly connected) to 254", *v)
		}
		out.TTLSecurityHops = uint8(*v)
	}
	if p.Spec.ConnectRetryTime != nil {
		out.ConnectRetry = p.Spec.ConnectRetryTime.Duration
		if out.ConnectRetry == 0 {
			return nil, fmt.Errorf("connectRetryTime 0s: use whole seconds from 2s to 3600s, or leave it unset for 2s")
		}
	}
	if p.Spec.IdleHoldTime != nil {
		out.IdleHold = p.Spec.IdleHoldTime.Duration
	}
	if err := out.Check(); err != nil {
		return nil, err
	}
	if gr := p.Spec.GracefulRestart; gr != nil && gr.Enabled {
		out.GracefulRestart, out.RestartTime = true, 120*time.Second
		if gr.RestartTime != nil {
			out.RestartTime = gr.RestartTime.Duration
		}
	}
	if p.Spec.SourceAddress != "" {
		if out.Source, err = netip.ParseAddr(p.Spec.SourceAddress); err != nil {
			return nil, fmt.Errorf("sourceAddress %q: %w", p.Spec.SourceAddress, err)
		}
	}
	if p.Spec.NodeSelector != nil {
		if out.NodeSelector, err = metav1.LabelSelectorAsSelector(p.Spec.NodeSelector); err != nil {
			return nil, fmt.Errorf("nodeSelector: %w", err)
		}
	}
	if ref := p.Spec.PasswordSecret; ref != nil {
		s := secrets[ref.Name]
		if s == nil {
			return nil, fmt.Errorf("password Secret %q not found in the agents' namespace", ref.Name)
		}
		v, ok := s.Data[ref.Key]
		if !ok || len(v) == 0 {
			return nil, fmt.Errorf("password Secret %q has no key %q", ref.Name, ref.Key)
		}
		out.Password = string(v)
	}
	return out, nil
}

func announcement(a *v1alpha1.BGPAnnouncement, pools []v1alpha1.IPPool) (*bgp.Announcement, error) {
	out := &bgp.Announcement{Name: a.Name, AggregationLength4: 32, AggregationLength6: 128}
	var err error
	if out.Pools, err = ipamkube.MatchPools(a.Spec.IPPools, a.Spec.IPPoolSelectors, pools); err != nil {
		return nil, err
	}
	if out.PeerSelectors, err = ipamkube.Selectors(a.Spec.PeerSelectors); err != nil {
		return nil, fmt.Errorf("peerSelectors: %w", err)
	}
	if out.NodeSelectors, err = ipamkube.Selectors(a.Spec.NodeSelectors); err != nil {
		return nil, fmt.Errorf("nodeSelectors: %w", err)
	}
	aliases := map[string]string{}
	for _, al := range a.Spec.CommunityAliases {
		aliases[al.Name] = al.Value
	}
	for _, c := range a.Spec.Communities {
		v := string(c)
		if alias, ok := aliases[v]; ok {
			v = alias
		}
		std, large, err := ParseCommunity(v)
		if err != nil {
			return nil, fmt.Errorf("community %q: %w", c, err)
		}
		if large != nil {
			out.LargeCommunities = append(out.LargeCommunities, *large)
		} else {
			out.Communities = append(out.Communities, std)
		}
	}
	if a.Spec.LocalPref != nil {
		v := uint32(*a.Spec.LocalPref)
		out.LocalPref = &v
	}
	if a.Spec.AggregationLength != nil {
		out.AggregationLength4 = int(*a.Spec.AggregationLength)
	}
	if a.Spec.AggregationLengthV6 != nil {
		out.AggregationLength6 = int(*a.Spec.AggregationLengthV6)
	}
	return out, nil
}

// ParseCommunity reads a standard community ("65000:100") or a large one
// ("65000:1:2").
func ParseCommunity(s string) (uint32, *[3]uint32, error) {
	parts := strings.Split(s, ":")
	switch len(parts) {
	case 2:
		hi, err1 := strconv.ParseUint(parts[0], 10, 16)
		lo, err2 := strconv.ParseUint(parts[1], 10, 16)
		if err1 != nil || err2 != nil {
			return 0, nil, fmt.Errorf("a standard community is two numbers up to 65535, like 65000:100")
		}
		return uint32(hi)<<16 | uint32(lo), nil, nil
	case 3:
		var v [3]uint32
		for i, p := range parts {
			n, err := strconv.ParseUint(p, 10, 32)
			if err != nil {
				return 0, nil, fmt.Errorf("a large community is three numbers up to 4294967295, like 65000:1:2")
			}
			v[i] = uint32(n)
		}
		return 0, &v, nil
	}
	return 0, nil, fmt.Errorf("not a community: use 65000:100 (standard) or 65000:1:2 (large)")
}
