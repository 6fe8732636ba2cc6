package kube

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/bgp"
	ipamkube "github.com/berthnet/berth/ipam/kube"
)

// peerView is a bgp.Peer written out for comparison: every field, the
// timers as "default" when unset, the node selector as its string.
type peerView struct {
	Name, Address     string
	Port              uint16
	PeerASN, LocalASN uint32
	Hold, Keepalive   string
	Password          string
	Multihop          bool
	GracefulRestart   bool
	RestartTime       time.Duration
	NodeSelector      string // "" none: every node
	Source            string // "" the kernel's choice
	AllowOwnAS        bool
	Labels            map[string]string
}

// exportView is one prefix to one peer with its attributes.
type exportView struct {
	Prefix      string
	Communities string // "65000:100 65000:200"
	Large       string // "65000:1:2"
	LocalPref   string // "-" none
}

// planView is a Built written out: the peers in order, what each is
// sent, the next hops, and the problems by object.
type planView struct {
	Peers              []peerView
	Exports            map[string][]exportView
	NextHop4, NextHop6 string
	Problems           map[string]string
}

func viewOf(b Built) planView {
	v := planView{Exports: map[string][]exportView{}, Problems: b.Problems}
	if b.Plan.NextHop4.IsValid() {
		v.NextHop4 = b.Plan.NextHop4.String()
	}
	if b.Plan.NextHop6.IsValid() {
		v.NextHop6 = b.Plan.NextHop6.String()
	}
	dur := func(d *time.Duration) string {
		if d == nil {
			return "default"
		}
		return d.String()
	}
	for _, p := range b.Plan.Peers {
		pv := peerView{Name: p.Name, Address: p.Address.String(), Port: p.Port, PeerASN: p.PeerASN, LocalASN: p.LocalASN,
			Hold: dur(p.HoldTime), Keepalive: dur(p.Keepalive), Password: p.Password, Multihop: p.EBGPMultihop,
			GracefulRestart: p.GracefulRestart, RestartTime: p.RestartTime, AllowOwnAS: p.AllowOwnAS, Labels: p.Labels}
		if p.NodeSelector != nil {
			pv.NodeSelector = p.NodeSelector.String()
		}
		if p.Source.IsValid() {
			pv.Source = p.Source.String()
		}
		v.Peers = append(v.Peers, pv)
	}
	for peer, exs := range b.Plan.Exports {
		for _, e := range exs {
			ev := exportView{Prefix: e.Prefix.String(), LocalPref: "-"}
			var cs, ls []string
			for _, c := range e.Attrs.Communities {
				cs = append(cs, fmt.Sprintf("%d:%d", c>>16, c&0xffff))
			}
			for _, c := range e.Attrs.LargeCommunities {
				ls = append(ls, fmt.Sprintf("%d:%d:%d", c[0], c[1], c[2]))
			}
			ev.Communities, ev.Large = strings.Join(cs, " "), strings.Join(ls, " ")
			if e.Attrs.LocalPref != nil {
				ev.LocalPref = fmt.Sprint(*e.Attrs.LocalPref)
			}
			v.Exports[peer] = append(v.Exports[peer], ev)
		}
	}
	return v
}

// Objects of the table: a node, a pool, a Service holding an address of
// it, a peer, an announcement; each case changes what it tests.
func testNode(labels map[string]string, addrs ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1", Labels: labels}}
	for _, a := range addrs {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
	}
	return n
}

func testPool(name string, addrs ...string) v1alpha1.IPPool {
	p := v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pool": name}}}
	for _, a := range addrs {
		p.Spec.Addresses = append(p.Spec.Addresses, v1alpha1.Address(a))
	}
	return p
}

func testService(name string, ips ...string) corev1.Service {
	s := corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr(ipamkube.Class)}}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return s
}

func testPeer(name, addr string, change ...func(*v1alpha1.BGPPeerSpec)) v1alpha1.BGPPeer {
	p := v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"peer": name}},
		Spec: v1alpha1.BGPPeerSpec{Address: addr, PeerASN: 64500, LocalASN: 64512}}
	for _, c := range change {
		c(&p.Spec)
	}
	return p
}

func testAnnouncement(name string, change ...func(*v1alpha1.BGPAnnouncementSpec)) v1alpha1.BGPAnnouncement {
	a := v1alpha1.BGPAnnouncement{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, c := range change {
		c(&a.Spec)
	}
	return a
}

func ptr[T any](v T) *T { return &v }

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func md5Secret(data map[string]string) map[string]*corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "berth-system", Name: "md5"}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return map[string]*corev1.Secret{"md5": s}
}

// router is the peer most cases expect: every field as the CR leaves it
// unset.
func router(change ...func(*peerView)) peerView {
	p := peerView{Name: "router", Address: "192.0.2.1", Port: 179, PeerASN: 64500, LocalASN: 64512,
		Hold: "default", Keepalive: "default", Labels: map[string]string{"peer": "router"}}
	for _, c := range change {
		c(&p)
	}
	return p
}

// webExport is 198.51.100.10/32 with no attributes.
var webExport = []exportView{{Prefix: "198.51.100.10/32", LocalPref: "-"}}

// The CR to speaker-config translation, field by field, with the
// expected configuration written by hand (MetalLB's config tests are the
// model): timers set, unset and zero; the MD5 password from a Secret, and
// a missing Secret or key; ASNs; node and peer selectors; communities and
// large communities, aliases; local preference; aggregation lengths;
// multihop; graceful restart; source address; port; and bad input, each
// giving the problem the status shows.
func TestBuild(t *testing.T) {
	pools := []v1alpha1.IPPool{testPool("public", "198.51.100.0/24", "2001:db8:1::/120")}
	web := []corev1.Service{testService("web", "198.51.100.10")}
	all := []v1alpha1.BGPAnnouncement{testAnnouncement("all")}
	self := testNode(map[string]string{"rack": "a"}, "192.0.2.11", "2001:db8::11")
	for _, c := range []struct {
		name     string
		objects  Objects // Self, Pools, Services and Announcements default to the above
		noSelf   bool
		want     planView
		problems map[string]string // object -> a part of its problem
	}{
		{
			name:    "a peer with nothing but its address and ASNs: port 179, default timers, no password, no selector",
			objects: Objects{Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1")}},
			want:    planView{Peers: []peerView{router()}, Exports: map[string][]exportView{"router": webExport}},
		},
		{
			name: "timers given",
			objects: Objects{Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1", func(s *v1alpha1.BGPPeerSpec) {
				s.HoldTime, s.KeepaliveTime = dur(30*time.Second), dur(10*time.Second)
			})}},
			want: planView{Peers: []peerView{router(func(p *peerView) { p.Hold, p.Keepalive = "30s", "10s" })},
				Exports: map[string][]exportView{"router": webExport}},
		},
		{
			name: "hold time given, keepalive unset",
			objects: Objects{Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1", func(s *v1alpha1.BGPPeerSpec) {
				s.HoldTime = dur(9 * time.Second)
			})}},
			want: planView{Peers: []peerView{router(func(p *peerView) { p.Hold = "9s" })},
				Exports: map[string][]exportView{"router": webExport}},
		},
		{
			name: "hold time 0s: refused, not turned into 90s",
			objects: Objects{Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1", func(s *v1alpha1.BGPPeerSpec) {
				s.HoldTime, s.KeepaliveTime = dur(0), dur(0)
			})}},
			problems: map[string]string{"BGPPeer router": "holdTime 0s (no hold timer, no keepalives) cannot be run by the embedded speaker"},
		},
		{
			name: "keepalive 0s with a hold time",
			objects: Objects{Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1", func(s *v1alpha1.BGPPeerSpec) {
				s.KeepaliveTime = dur(0)
			})}},
			problems: map[string]string{"BGPPeer router": "keepaliveTime 0s"},
		},
		{
			name: "hold time not in whole seconds",
			objects: Objects{Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1", func(s *v1alpha1.BGPPeerSpec) {
				s.HoldTime = dur(4500 * time.Millisecond)
			})}},
			problems: map[string]string{"BGPPeer router": "holdTime 4.5s: use whole seconds"},
		},
		{
			name: "MD5 password from the Secret",
			objects: Objects{Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1", func(s *v1alpha1.BGPPeerSpec) {
				s.PasswordSecret = &v1alpha1.SecretKeyRef{Name: "md5", Key: "password"}
			})}, Secrets: md5Secret(map[string]string{"password": "s3cret", "other": "x"})},
			want: planView{Peers: []peerView{router(func(p *peerView) { p.Password = "s3cret" })},
				Exports: map[string][]exportView{"router": webExport}},
		},
		{
			name: "MD5 Secret missing: the peer is left out, and says why",
			objects: Objects{Peers: []v1alpha1.BGPPeer{
				testPeer("router", "192.0.2.1", func(s *v1alpha1.BGPPeerSpec) {
					s.PasswordSecret = &v1alpha1.SecretKeyRef{Name: "md5", Key: "password"}
				}),
				testPeer("other", "192.0.2.2"),
			}},
			want: planView{Peers: []peerView{router(func(p *peerView) {
				p.Name, p.Address, p.Labels = "other", "192.0.2.2", map[string]string{"peer": "other"}
			})},
				Exports: map[string][]exportView{"other": webExport}},
			problems: map[string]string{"BGPPeer router": `password Secret "md5" not found in the agents' namespace`},
		},
		{
			name: "MD5 Secret without the key",
			objects: Objects{Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1", func(s *v1alpha1.BGPPeerSpec) {
				s.PasswordSecret = &v1alpha1.SecretKeyRef{Name: "md5", Key: "password"}
			})}, Secrets: md5Secret(map[string]string{"other": "x"})},
			problems: map[string]string{"BGPPeer router": `password Secret "md5" has no key "password"`},
		},
		{
			name: "MD5 key empty",
			objects: Objects{Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1", func(s *v1alpha1.BGPPeerSpec) {
				s.PasswordSecret = &v1alpha1.SecretKeyRef{Name: "md5", Key: "password"}
			})}, Secrets: md5Secret(map[string]string{"password": ""})},
			problems: map[string]string{"BGPPeer router": `password Secret "md5" has no key "password"`},
		},
		{
			name: "4-byte ASNs, iBGP, another port",
			objects: Objects{Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1", func(s *v1alpha1.BGPPeerSpec) {
				s.PeerASN, s.LocalASN, s.Port = 4200000000, 4200000000, 1179
			})}},
			want: planView{Peers: []peerView{router(func(p *peerView) { p.PeerASN, p.LocalASN, p.Port = 4200000000, 4200000000, 1179 })},
				Exports: map[string][]exportView{"router": webExport}},
		},
		{
			name: "each peer its own local ASN; no server ASN chosen from the first",
			objects: Objects{Peers: []v1alpha1.BGPPeer{
				testPeer("router", "192.0.2.1"),
				testPeer("aa-first", "192.0.2.2", func(s *v1alpha1.BGPPeerSpec) { s.LocalASN = 65001 }),
			}},
			want: planView{Peers: []peerView{
				router(func(p *peerView) {
					p.Name, p.Address, p.LocalASN, p.Labels = "aa-first", "192.0.2.2", 65001, map[string]string{"peer": "aa-first"}
				}),
				router(),
			}, Exports: map[string][]exportView{"aa-first": webExport, "router": webExport}},
		},
		{
			name: "multihop, graceful restart with its default restart time, source address",
			objects: Objects{Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1", func(s *v1alpha1.BGPPeerSpec) {
				s.EBGPMultiHop, s.SourceAddress = true, "192.0.2.11"
				s.GracefulRestart = &v1alpha1.BGPGracefulRestart{Enabled: true}
			})}},
			want: planView{Peers: []peerView{router(func(p *peerView) {
				p.Multihop, p.GracefulRestart, p.RestartTime, p.Source = true, true, 120*time.Second, "192.0.2.11"
			})}, Exports: map[string][]exportView{"router": webExport}},
		},
		{
			name: "graceful restart with a restart time; disabled, its restart time ignored",
			objects: Objects{Peers: []v1alpha1.BGPPeer{
				testPeer("router", "192.0.2.1", func(s *v1alpha1.BGPPeerSpec) {
					s.GracefulRestart = &v1alpha1.BGPGracefulRestart{Enabled: true, RestartTime: dur(30 * time.Second)}
				}),
				testPeer("zz", "192.0.2.2", func(s *v1alpha1.BGPPeerSpec) {
					s.GracefulRestart = &v1alpha1.BGPGracefulRestart{Enabled: false, RestartTime: dur(30 * time.Second)}
				}),
			}},
			want: planView{Peers: []peerView{
				router(func(p *peerView) { p.GracefulRestart, p.RestartTime = true, 30*time.Second }),
				router(func(p *peerView) { p.Name, p.Address, p.Labels = "zz", "192.0.2.2", map[string]string{"peer": "zz"} }),
			}, Exports: map[string][]exportView{"router": webExport, "zz": webExport}},
		},
		{
			name: "bad address, bad source address",
			objects: Objects{Peers: []v1alpha1.BGPPeer{
				testPeer("router", "192.0.2.300"),
				testPeer("zz", "192.0.2.2", func(s *v1alpha1.BGPPeerSpec) { s.SourceAddress = "node1" }),
			}},
			problems: map[string]string{"BGPPeer router": `address "192.0.2.300"`, "BGPPeer zz": `sourceAddress "node1"`},
		},
		{
			name: "node selector: a peer for rack a (this node) and one for rack b",
			objects: Objects{Peers: []v1alpha1.BGPPeer{
				testPeer("router", "192.0.2.1", func(s *v1alpha1.BGPPeerSpec) {
					s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "a"}}
				}),
				testPeer("rack-b", "192.0.2.2", func(s *v1alpha1.BGPPeerSpec) {
					s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "b"}}
				}),
			}},
			want: planView{Peers: []peerView{router(func(p *peerView) { p.NodeSelector = "rack=a" })},
				Exports: map[string][]exportView{"router": webExport}},
		},
		{
			name: "two peers of one address on this node: the first by name runs, the other says why",
			objects: Objects{Peers: []v1alpha1.BGPPeer{
				testPeer("router", "192.0.2.1"),
				testPeer("copy", "192.0.2.1", func(s *v1alpha1.BGPPeerSpec) { s.PeerASN = 64501 }),
				// Another node's: no conflict here.
				testPeer("rack-b", "192.0.2.1", func(s *v1alpha1.BGPPeerSpec) {
					s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "b"}}
				}),
			}},
			want: planView{Peers: []peerView{router(func(p *peerView) {
				p.Name, p.PeerASN, p.Labels = "copy", 64501, map[string]string{"peer": "copy"}
			})}, Exports: map[string][]exportView{"copy": webExport}},
			problems: map[string]string{"BGPPeer router": "address 192.0.2.1 is BGPPeer copy's too, on this node"},
		},
		{
			name: "node selector that is not one",
			objects: Objects{Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1", func(s *v1alpha1.BGPPeerSpec) {
				s.NodeSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "rack", Operator: "Near"}}}
			})}},
			problems: map[string]string{"BGPPeer router": "nodeSelector"},
		},
		{
			name: "communities (standard, large, an alias), local preference, aggregation to /24",
			objects: Objects{Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1")},
				Announcements: []v1alpha1.BGPAnnouncement{testAnnouncement("all", func(s *v1alpha1.BGPAnnouncementSpec) {
					s.Communities = []v1alpha1.Community{"65000:200", "65000:1:2", "blackhole-ish", "65000:100"}
					s.CommunityAliases = []v1alpha1.CommunityAlias{{Name: "blackhole-ish", Value: "65000:666"}}
					s.LocalPref = ptr(int64(200))
					s.AggregationLength = ptr(int32(24))
				})}},
			want: planView{Peers: []peerView{router()}, Exports: map[string][]exportView{"router": {
				{Prefix: "198.51.100.0/24", Communities: "65000:100 65000:200 65000:666", Large: "65000:1:2", LocalPref: "200"},
			}}},
		},
		{
			name: "two announcements cover one address: the union of communities, the highest local preference",
			objects: Objects{Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1")},
				Announcements: []v1alpha1.BGPAnnouncement{
					testAnnouncement("a", func(s *v1alpha1.BGPAnnouncementSpec) {
						s.Communities, s.LocalPref = []v1alpha1.Community{"65000:1"}, ptr(int64(100))
					}),
					testAnnouncement("b", func(s *v1alpha1.BGPAnnouncementSpec) {
						s.Communities, s.LocalPref = []v1alpha1.Community{"65000:2", "65000:1"}, ptr(int64(300))
					}),
				}},
			want: planView{Peers: []peerView{router()}, Exports: map[string][]exportView{"router": {
				{Prefix: "198.51.100.10/32", Communities: "65000:1 65000:2", LocalPref: "300"},
			}}},
		},
		{
			name: "IPv6: an IPv6 peer gets the IPv6 address aggregated to /120, the IPv4 peer the IPv4 one",
			objects: Objects{Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1"), testPeer("v6", "2001:db8::1")},
				Services: []corev1.Service{testService("web", "198.51.100.10", "2001:db8:1::10")},
				Announcements: []v1alpha1.BGPAnnouncement{testAnnouncement("all", func(s *v1alpha1.BGPAnnouncementSpec) {
					s.AggregationLengthV6 = ptr(int32(120))
				})}},
			want: planView{Peers: []peerView{
				router(),
				router(func(p *peerView) { p.Name, p.Address, p.Labels = "v6", "2001:db8::1", map[string]string{"peer": "v6"} }),
			}, Exports: map[string][]exportView{"router": webExport, "v6": {{Prefix: "2001:db8:1::/120", LocalPref: "-"}}}},
		},
		{
			name: "peer selectors: the announcement goes to the rack-a peer only",
			objects: Objects{Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1"), testPeer("zz", "192.0.2.2")},
				Announcements: []v1alpha1.BGPAnnouncement{testAnnouncement("all", func(s *v1alpha1.BGPAnnouncementSpec) {
					s.PeerSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"peer": "router"}}}
				})}},
			want: planView{Peers: []peerView{
				router(),
				router(func(p *peerView) { p.Name, p.Address, p.Labels = "zz", "192.0.2.2", map[string]string{"peer": "zz"} }),
			}, Exports: map[string][]exportView{"router": webExport}},
		},
		{
			name: "node selectors of the announcement leave this node out: sessions, no routes",
			objects: Objects{Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1")},
				Announcements: []v1alpha1.BGPAnnouncement{testAnnouncement("all", func(s *v1alpha1.BGPAnnouncementSpec) {
					s.NodeSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"rack": "b"}}}
				})}},
			want: planView{Peers: []peerView{router()}},
		},
		{
			name: "a node labelled exclude-from-external-load-balancers advertises nothing",
			objects: Objects{Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1")},
				Self: testNode(map[string]string{bgp.ExcludeLabel: ""}, "192.0.2.11")},
			want: planView{Peers: []peerView{router()}},
		},
		{
			name: "pools by name and selector: an announcement of another pool sends nothing",
			objects: Objects{Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1")},
				Pools:    []v1alpha1.IPPool{testPool("public", "198.51.100.0/24"), testPool("private", "203.0.113.0/24")},
				Services: []corev1.Service{testService("web", "198.51.100.10"), testService("db", "203.0.113.5")},
				Announcements: []v1alpha1.BGPAnnouncement{
					testAnnouncement("by-name", func(s *v1alpha1.BGPAnnouncementSpec) {
						s.IPPools, s.Communities = []string{"private"}, []v1alpha1.Community{"65000:9"}
					}),
					testAnnouncement("by-selector", func(s *v1alpha1.BGPAnnouncementSpec) {
						s.IPPoolSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"pool": "public"}}}
					}),
				}},
			want: planView{Peers: []peerView{router()}, Exports: map[string][]exportView{"router": {
				{Prefix: "198.51.100.10/32", LocalPref: "-"},
				{Prefix: "203.0.113.5/32", Communities: "65000:9", LocalPref: "-"},
			}}},
		},
		{
			name: "a community that is none, an alias to nothing valid: the announcement is left out",
			objects: Objects{Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1")},
				Announcements: []v1alpha1.BGPAnnouncement{
					testAnnouncement("big", func(s *v1alpha1.BGPAnnouncementSpec) { s.Communities = []v1alpha1.Community{"65536:1"} }),
					testAnnouncement("alias", func(s *v1alpha1.BGPAnnouncementSpec) {
						s.Communities = []v1alpha1.Community{"x"}
						s.CommunityAliases = []v1alpha1.CommunityAlias{{Name: "x", Value: "1:2:3:4"}}
					}),
				}},
			want: planView{Peers: []peerView{router()}},
			problems: map[string]string{
				"BGPAnnouncement big":   `community "65536:1": a standard community is two numbers up to 65535`,
				"BGPAnnouncement alias": `community "x": not a community`,
			},
		},
		{
			name: "pod network mode bgp: the node's pod ranges to every peer of their family, own AS allowed back",
			objects: Objects{Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1")}, PodCIDRs: true,
				Self: func() *corev1.Node {
					n := testNode(map[string]string{"rack": "a"}, "192.0.2.11")
					n.Spec.PodCIDRs = []string{"10.244.1.0/24", "fd00:10:244:1::/64"}
					return n
				}(),
			},
			want: planView{Peers: []peerView{router(func(p *peerView) { p.AllowOwnAS = true })}, Exports: map[string][]exportView{"router": {
				{Prefix: "10.244.1.0/24", LocalPref: "-"},
				{Prefix: "198.51.100.10/32", LocalPref: "-"},
			}}},
		},
		{
			name:    "no Node object yet: nothing",
			noSelf:  true,
			objects: Objects{Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1")}},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := c.objects
			if o.Self == nil && !c.noSelf {
				o.Self = self
			}
			if o.Pools == nil {
				o.Pools = pools
			}
			if o.Services == nil {
				o.Services = web
			}
			if o.Announcements == nil {
				o.Announcements = all
			}
			got := Build(o)
			gotProblems := got.Problems
			got.Problems = nil
			want := c.want
			if want.Exports == nil {
				want.Exports = map[string][]exportView{}
			}
			if !c.noSelf {
				want.NextHop4 = o.Self.Status.Addresses[0].Address
				if len(o.Self.Status.Addresses) > 1 {
					want.NextHop6 = o.Self.Status.Addresses[1].Address
				}
			}
			if diff := cmp.Diff(want, viewOf(got)); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			var keys []string
			for k := range gotProblems {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var wantKeys []string
			for k := range c.problems {
				wantKeys = append(wantKeys, k)
			}
			sort.Strings(wantKeys)
			if !slices.Equal(keys, wantKeys) {
				t.Errorf("problems for %q, want for %q: %v", keys, wantKeys, gotProblems)
			}
			for k, part := range c.problems {
				if !strings.Contains(gotProblems[k], part) {
					t.Errorf("%s: problem %q, want it to say %q", k, gotProblems[k], part)
				}
			}
		})
	}
}
