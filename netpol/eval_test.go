package netpol

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// check is one connection and the expected answer; why, when set, must be
// part of the verdict's explanation.
type check struct {
	conn  Conn
	allow bool
	why   string
}

func node(name, ip, dst string) Conn {
	return Conn{Src: netip.MustParseAddr(ip), SrcNode: name, Dst: addr(dst), Protocol: corev1.ProtocolTCP, Port: 80}
}

func TestAllowed(t *testing.T) {
	denyX := policy("x", "deny", sel(), ingress)
	tests := []struct {
		name     string
		policies []networkingv1.NetworkPolicy
		checks   []check
	}{
		{"no policy allows everything", nil, []check{
			{tcp("y/a", "x/a", 80), true, "ingress x/a not isolated"},
			{tcp("192.168.1.1", "x/a", 80), true, "egress not a pod"},
		}},
		{"default deny ingress in x", []networkingv1.NetworkPolicy{denyX}, []check{
			{tcp("y/a", "x/a", 80), false, "x/a isolated by x/deny, no rule matches"},
			{tcp("x/b", "x/a", 80), false, ""},
			{tcp("x/a", "y/a", 80), true, "egress x/a not isolated"},
		}},
		{"empty policyTypes and no rules isolates ingress only", []networkingv1.NetworkPolicy{policy("x", "p", sel())}, []check{
			{tcp("y/a", "x/a", 80), false, ""},
			{tcp("x/a", "y/a", 80), true, ""},
		}},
		{"empty policyTypes with egress rules isolates both", []networkingv1.NetworkPolicy{
			withEgress(policy("x", "p", sel("pod=a")), to(podPeer(sel("pod=b")))),
		}, []check{
			{tcp("x/a", "x/b", 80), true, "allowed by x/p egress[0]"},
			{tcp("x/a", "x/c", 80), false, "egress x/a isolated by x/p"},
			{tcp("y/b", "x/a", 80), false, "ingress x/a isolated by x/p"},
			{tcp("x/b", "x/c", 80), true, ""},
		}},
		{"egress-only policy does not isolate ingress", []networkingv1.NetworkPolicy{policy("x", "p", sel(), egress)}, []check{
			{tcp("y/a", "x/a", 80), true, "ingress x/a not isolated"},
			{tcp("x/a", "y/a", 80), false, "egress x/a isolated by x/p"},
			{tcp("x/a", "192.168.1.1", 80), false, ""},
		}},
		{"ingress rules of an egress-only policy are ignored", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), egress), from(podPeer(sel("pod=b")))),
			denyX,
		}, []check{
			{tcp("x/b", "x/a", 80), false, "isolated by x/deny,"},
		}},
		{"policy of another namespace does not select", []networkingv1.NetworkPolicy{policy("y", "deny", sel(), ingress)}, []check{
			{tcp("z/a", "x/a", 80), true, ""},
			{tcp("z/a", "y/a", 80), false, ""},
		}},
		{"podSelector of the policy selects by label", []networkingv1.NetworkPolicy{policy("x", "deny-a", sel("pod=a"), ingress)}, []check{
			{tcp("y/a", "x/a", 80), false, ""},
			{tcp("y/a", "x/b", 80), true, ""},
		}},
		{"matchExpressions", []networkingv1.NetworkPolicy{policy("x", "deny-ab", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "pod", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}},
		}}, ingress)}, []check{
			{tcp("y/a", "x/a", 80), false, ""},
			{tcp("y/a", "x/b", 80), false, ""},
			{tcp("y/a", "x/c", 80), true, ""},
		}},
		{"peer podSelector alone is the policy's namespace", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "allow-b", sel(), ingress), from(podPeer(sel("pod=b")))),
		}, []check{
			{tcp("x/b", "x/a", 80), true, "allowed by x/allow-b ingress[0]"},
			{tcp("y/b", "x/a", 80), false, ""},
			{tcp("x/c", "x/a", 80), false, ""},
		}},
		{"peer podSelector {} is every pod of the policy's namespace", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), ingress), from(podPeer(sel()))),
		}, []check{
			{tcp("x/c", "x/a", 80), true, ""},
			{tcp("y/c", "x/a", 80), false, ""},
			{tcp("192.168.1.1", "x/a", 80), false, ""},
		}},
		{"peer namespaceSelector alone is all pods of matching namespaces", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), ingress), from(nsPeer(sel("ns=y")))),
		}, []check{
			{tcp("y/c", "x/a", 80), true, ""},
			{tcp("z/a", "x/a", 80), false, ""},
			{tcp("x/b", "x/a", 80), false, ""},
		}},
		{"peer namespaceSelector {} is all namespaces but no outside address", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), ingress), from(nsPeer(sel()))),
		}, []check{
			{tcp("z/c", "x/a", 80), true, ""},
			{tcp("x/b", "x/a", 80), true, ""},
			{tcp("192.168.1.1", "x/a", 80), false, ""},
		}},
		{"namespace name label is always there", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), ingress), from(nsPeer(sel(corev1.LabelMetadataName+"=z")))),
		}, []check{
			{tcp("z/c", "x/a", 80), true, ""},
			{tcp("y/c", "x/a", 80), false, ""},
		}},
		{"namespaceSelector and podSelector in one peer is AND", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), ingress), from(bothPeer(sel("ns=y"), sel("pod=b")))),
		}, []check{
			{tcp("y/b", "x/a", 80), true, ""},
			{tcp("y/a", "x/a", 80), false, ""},
			{tcp("x/b", "x/a", 80), false, ""},
		}},
		{"namespaceSelector and podSelector {} in one peer is all of those namespaces", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), ingress), from(bothPeer(sel("ns=y"), sel()))),
		}, []check{
			{tcp("y/b", "x/a", 80), true, ""},
			{tcp("x/b", "x/a", 80), false, ""},
		}},
		{"two peers are OR", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), ingress), from(nsPeer(sel("ns=y")), podPeer(sel("pod=b")))),
		}, []check{
			{tcp("y/a", "x/a", 80), true, ""},
			{tcp("x/b", "x/a", 80), true, ""},
			{tcp("z/b", "x/a", 80), false, ""},
		}},
		{"a peer with neither selector nor ipBlock matches nothing", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), ingress), from(networkingv1.NetworkPolicyPeer{})),
		}, []check{
			{tcp("x/b", "x/a", 80), false, ""},
		}},
		{"empty from is every source", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), ingress), from()),
		}, []check{
			{tcp("z/b", "x/a", 80), true, ""},
			{tcp("192.168.1.1", "x/a", 9999), true, ""},
		}},
		{"policies are a union", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "from-b", sel(), ingress), from(podPeer(sel("pod=b")))),
			withIngress(policy("x", "from-y", sel("pod=a"), ingress), from(nsPeer(sel("ns=y")))),
			denyX,
		}, []check{
			{tcp("x/b", "x/a", 80), true, "allowed by x/from-b ingress[0]"},
			{tcp("y/c", "x/a", 80), true, "allowed by x/from-y ingress[0]"},
			{tcp("y/c", "x/c", 80), false, "isolated by x/deny,x/from-b,"},
		}},
		{"rules of one policy are a union and all matches are named", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), ingress), from(podPeer(sel("pod=b"))), from(nsPeer(sel()))),
		}, []check{
			{tcp("x/b", "x/a", 80), true, "allowed by x/p ingress[0],x/p ingress[1]"},
		}},
		{"ipBlock with except", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), ingress), from(blockPeer("192.168.0.0/16", "192.168.1.0/24"))),
		}, []check{
			{tcp("192.168.2.5", "x/a", 80), true, ""},
			{tcp("192.168.1.5", "x/a", 80), false, ""},
			{tcp("10.1.1.1", "x/a", 80), false, ""},
		}},
		{"ipBlock matches pod addresses by IP", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), ingress), from(blockPeer("10.0.2.0/24", "10.0.2.3/32"))),
		}, []check{
			{tcp("y/a", "x/a", 80), true, ""},
			{tcp("y/c", "x/a", 80), false, ""},
			{tcp("z/a", "x/a", 80), false, ""},
		}},
		{"ipBlock IPv6", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), ingress), from(blockPeer("fd00::2:0/112", "fd00::2:2/128"))),
		}, []check{
			{tcp("y/a6", "x/a6", 80), true, ""},
			{tcp("y/b6", "x/a6", 80), false, ""},
			{tcp("y/a", "x/a", 80), false, ""},
			{tcp("2001:db8::1", "x/a6", 80), false, ""},
		}},
		{"IPv4-mapped IPv6 addresses are their IPv4 address", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), ingress), from(podPeer(sel("pod=b")))),
		}, []check{
			{tcp("::ffff:10.0.1.2", "::ffff:10.0.1.1", 80), true, ""},
		}},
		{"ipBlock in egress matches outside destinations", []networkingv1.NetworkPolicy{
			withEgress(policy("x", "p", sel(), egress), to(blockPeer("0.0.0.0/0", "10.0.0.0/8"))),
		}, []check{
			{tcp("x/a", "8.8.8.8", 53), true, ""},
			{tcp("x/a", "y/a", 80), false, ""},
			{tcp("x/a6", "2001:db8::1", 80), false, ""},
		}},
		{"numeric port defaults to TCP", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), ingress), ports(from(), port("", 80))),
		}, []check{
			{tcp("y/a", "x/a", 80), true, ""},
			{udp("y/a", "x/a", 80), false, ""},
			{tcp("y/a", "x/a", 81), false, ""},
		}},
		{"UDP and SCTP ports", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), ingress), ports(from(), port(corev1.ProtocolUDP, 53), port(corev1.ProtocolSCTP, 9))),
		}, []check{
			{udp("y/a", "x/a", 53), true, ""},
			{tcp("y/a", "x/a", 53), false, ""},
			{Conn{Src: addr("y/a"), Dst: addr("x/a"), Protocol: corev1.ProtocolSCTP, Port: 9}, true, ""},
			{Conn{Src: addr("y/a"), Dst: addr("x/a"), Protocol: corev1.ProtocolSCTP, Port: 53}, false, ""},
		}},
		{"protocol without port is every port of it", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), ingress), ports(from(), allPortsOf(corev1.ProtocolUDP))),
		}, []check{
			{udp("y/a", "x/a", 5353), true, ""},
			{tcp("y/a", "x/a", 5353), false, ""},
		}},
		{"endPort is an inclusive range", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), ingress), ports(from(), portRange(8000, 8080))),
		}, []check{
			{tcp("y/a", "x/a", 8000), true, ""},
			{tcp("y/a", "x/a", 8080), true, ""},
			{tcp("y/a", "x/a", 7999), false, ""},
			{tcp("y/a", "x/a", 8081), false, ""},
			{udp("y/a", "x/a", 8000), false, ""},
		}},
		{"named port resolves per destination pod", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), ingress), ports(from(), namedPort("", "serve"))),
		}, []check{
			{tcp("y/a", "x/a", 80), true, ""},
			{tcp("y/a", "x/a", 81), false, ""},
			{tcp("y/a", "x/b", 81), true, ""},
			{tcp("y/a", "x/b", 80), false, ""},
			// c's "serve" is UDP: a named port with the default protocol TCP misses it.
			{udp("y/a", "x/c", 82), false, ""},
			{tcp("y/a", "x/c", 82), false, ""},
		}},
		{"named port needs the protocol of the container port", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), ingress), ports(from(), namedPort(corev1.ProtocolUDP, "serve"))),
		}, []check{
			{udp("y/a", "x/c", 82), true, ""},
			{udp("y/a", "x/a", 80), false, ""},
		}},
		{"named port on egress resolves against the destination pod", []networkingv1.NetworkPolicy{
			withEgress(policy("x", "p", sel(), egress), egressPorts(to(), namedPort("", "serve"))),
		}, []check{
			{tcp("x/a", "y/b", 81), true, ""},
			{tcp("x/a", "y/b", 80), false, ""},
			{tcp("x/a", "y/a", 80), true, ""},
			{tcp("x/a", "192.168.1.1", 80), false, ""},
		}},
		{"named port with endPort matches nothing", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), ingress), ports(from(), func() networkingv1.NetworkPolicyPort {
				p := namedPort("", "serve")
				p.EndPort = new(int32(90))
				return p
			}())),
		}, []check{
			{tcp("y/a", "x/a", 80), false, ""},
		}},
		{"both sides must allow", []networkingv1.NetworkPolicy{
			withEgress(policy("x", "out", sel(), egress), to(nsPeer(sel("ns=y")))),
			policy("y", "deny", sel("pod=b"), ingress),
		}, []check{
			{tcp("x/a", "y/a", 80), true, ""},
			{tcp("x/a", "y/b", 80), false, "egress x/a allowed by x/out egress[0]; ingress y/b isolated by y/deny"},
			{tcp("x/a", "z/a", 80), false, ""},
			{tcp("z/a", "y/b", 80), false, ""},
		}},
		{"own node is always allowed in", []networkingv1.NetworkPolicy{denyX, policy("x", "no-egress", sel(), egress)}, []check{
			{node("n1", "172.16.0.1", "x/a"), true, "x/a from its own node"},
			{node("n2", "172.16.0.2", "x/a"), false, ""},
			// A node source is never taken for a pod, even at a pod's address.
			{node("n1", "10.0.1.2", "x/a"), true, "egress not a pod"},
		}},
		{"another node is an outside address", []networkingv1.NetworkPolicy{
			withIngress(policy("x", "p", sel(), ingress), from(blockPeer("172.16.0.0/16")), from(nsPeer(sel()))),
		}, []check{
			{node("n2", "172.16.0.2", "x/a"), true, ""},
			{node("n2", "172.17.0.2", "x/a"), false, ""},
		}},
		{"outside to outside is not ours", []networkingv1.NetworkPolicy{denyX}, []check{
			{tcp("192.168.1.1", "192.168.1.2", 80), true, ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Validate(tt.policies, pods()); err != nil && !strings.Contains(tt.name, "matches nothing") {
				t.Fatalf("invalid fixture: %v", err)
			}
			for _, c := range tt.checks {
				v := Allowed(tt.policies, namespaces(), pods(), c.conn)
				if v.Allowed != c.allow {
					t.Errorf("%v: got allowed=%v, want %v", v, v.Allowed, c.allow)
				}
				if c.why != "" && !strings.Contains(v.String(), c.why) {
					t.Errorf("%v: explanation lacks %q", v, c.why)
				}
			}
		})
	}
}

func TestHairpin(t *testing.T) {
	pols := []networkingv1.NetworkPolicy{policy("x", "deny", sel(), ingress)}
	v := Allowed(pols, namespaces(), pods(), tcp("x/a", "x/a", 80))
	if !v.Hairpin || v.Allowed {
		t.Errorf("x/a to itself under default deny: got %v (hairpin %v), want denied hairpin", v, v.Hairpin)
	}
}

func TestPolicyTypesDefault(t *testing.T) {
	p := policy("x", "p", sel())
	if got := PolicyTypes(&p); len(got) != 1 || got[0] != ingress {
		t.Errorf("no rules: got %v, want [Ingress]", got)
	}
	p = withIngress(p, from())
	if got := PolicyTypes(&p); len(got) != 1 || got[0] != ingress {
		t.Errorf("ingress rules: got %v, want [Ingress]", got)
	}
	p = withEgress(p, to())
	if got := PolicyTypes(&p); len(got) != 2 {
		t.Errorf("egress rules: got %v, want [Ingress Egress]", got)
	}
	p = withEgress(policy("x", "p", sel(), egress), to())
	if got := PolicyTypes(&p); len(got) != 1 || got[0] != egress {
		t.Errorf("explicit: got %v, want [Egress]", got)
	}
}

func TestValidate(t *testing.T) {
	bad := []networkingv1.NetworkPolicy{
		withIngress(policy("x", "p", sel(), ingress),
			from(networkingv1.NetworkPolicyPeer{}),
			from(blockPeer("10.0.0.0/8", "192.168.0.0/16")),
			from(networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}, PodSelector: sel()}),
			ports(from(), portRange(90, 80)),
		),
	}
	dup := append(pods(), Pod{Namespace: "x", Name: "twin", IPs: []netip.Addr{addr("x/a")}})
	err := Validate(bad, dup)
	if err == nil {
		t.Fatal("Validate accepted bad input")
	}
	for _, want := range []string{"peer 0: set a podSelector", "not inside cidr", "cannot be combined", "endPort 80 must be between port 90", "x/twin: IP 10.0.1.1 is also pod x/a's"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	good := []networkingv1.NetworkPolicy{withIngress(policy("x", "p", sel(), ingress), ports(from(nsPeer(sel())), namedPort("", "serve"), portRange(1, 65535)))}
	if err := Validate(good, pods()); err != nil {
		t.Errorf("Validate rejected good input: %v", err)
	}
}
