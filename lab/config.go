// Package lab runs a bare-metal Kubernetes cluster on one machine: nodes, a
// router and clients as network namespaces on a lab LAN, and a real control
// plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) on the
// host, reachable from the node namespaces over the LAN.
package lab

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
)

// Config describes one lab. Two labs with different names and LANs can run on
// the same machine at once.
type Config struct {
	// Name prefixes every namespace, link and folder the lab makes.
	Name string `json:"name"`
	// Nodes is how many node namespaces (and Node objects) to make.
	Nodes int `json:"nodes"`
	// LAN is the segment the nodes, the router, the LAN client and the host share.
	LAN netip.Prefix `json:"lan"`
	// LAN6 is the LAN's IPv6 subnet, a /64: the router, the nodes, the LAN
	// client and the host have an address of each family. LAN6For derives
	// one from LAN.
	LAN6 netip.Prefix `json:"lan6"`
	// Upstream is the link between the router and the external client
	// (IPv4 only).
	Upstream netip.Prefix `json:"upstream"`
	// ServiceCIDR and ClusterCIDR are the cluster's IPv4 Service and pod
	// ranges; ServiceCIDR6 and ClusterCIDR6 its IPv6 ones: the cluster is
	// dual-stack, IPv4 first.
	ServiceCIDR  netip.Prefix `json:"serviceCIDR"`
	ClusterCIDR  netip.Prefix `json:"clusterCIDR"`
	ServiceCIDR6 netip.Prefix `json:"serviceCIDR6"`
	ClusterCIDR6 netip.Prefix `json:"clusterCIDR6"`
	// NodeCIDRMaskSize and NodeCIDRMaskSize6 are the sizes of each node's
	// IPv4 and IPv6 podCIDRs.
	NodeCIDRMaskSize  int `json:"nodeCIDRMaskSize"`
	NodeCIDRMaskSize6 int `json:"nodeCIDRMaskSize6"`
	// StateDir holds certificates, kubeconfigs, logs and etcd's data.
	StateDir string `json:"stateDir"`
	// K8sBinDir holds etcd, kube-apiserver, kube-controller-manager,
	// kube-scheduler and kubectl (`make test-deps` builds them into bin/k8s).
	K8sBinDir string `json:"k8sBinDir"`
	// PodNetworkMode is berth-agent's --pod-network-mode: routed, vxlan
	// or auto.
	PodNetworkMode string `json:"podNetworkMode"`
	// ServiceProxy runs berth-agent's nftables service proxy on the nodes.
	ServiceProxy bool `json:"serviceProxy"`
	// Every node is a real one (kubelet.go): containerd and the kubelet,
	// with Berth installed by its chart from its images. NodeBinDir holds
	// kubelet, containerd, containerd-shim-runc-v2, ctr and runc (`make
	// test-deps` builds them into bin/node).
	NodeBinDir string `json:"nodeBinDir,omitempty"`
	// ImagesDir holds the image tarballs every node imports (`make images`
	// writes bin/images).
	ImagesDir string `json:"imagesDir,omitempty"`
	// ChartDir is Berth's chart (charts/berth) and Helm the helm binary that
	// installs it.
	ChartDir string `json:"chartDir,omitempty"`
	Helm     string `json:"helm,omitempty"`
}

// StateRoot is where labs keep their state by default: a tmpfs, cleared at
// boot like the network namespaces it describes.
const StateRoot = "/run/berth-lab"

// DefaultName is the name of the lab `make run` starts.
const DefaultName = "berth"

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,9}$`)

// Default returns the lab `berthctl lab up` starts with no flags.
func Default() Config {
	lan := netip.MustParsePrefix("198.18.0.0/24")
	return Config{
		Name:              DefaultName,
		Nodes:             3,
		LAN:               lan,
		LAN6:              LAN6For(lan),
		Upstream:          netip.MustParsePrefix("203.0.113.0/24"),
		ServiceCIDR:       netip.MustParsePrefix("10.96.0.0/16"),
		ClusterCIDR:       netip.MustParsePrefix("10.244.0.0/16"),
		ServiceCIDR6:      netip.MustParsePrefix("fd00:10:96::/108"),
		ClusterCIDR6:      netip.MustParsePrefix("fd00:10:244::/56"),
		NodeCIDRMaskSize:  24,
		NodeCIDRMaskSize6: 64,
		PodNetworkMode:    "auto",
		ServiceProxy:      true,
		StateDir:          filepath.Join(StateRoot, DefaultName),
	}
}

// LAN6For is the IPv6 LAN that goes with an IPv4 LAN: the unique local
// prefix fdbe::/16 followed by the LAN's IPv4 network address, so
// 198.18.0.0/24 gets fdbe:c612::/64. Labs never share a LAN, so they never
// share its IPv6 prefix either.
func LAN6For(lan netip.Prefix) netip.Prefix {
	var a [16]byte
	a[0], a[1] = 0xfd, 0xbe
	v4 := lan.Masked().Addr().As4()
	copy(a[2:6], v4[:])
	return netip.PrefixFrom(netip.AddrFrom16(a), 64)
}

// Validate says what to change when the config cannot make a lab.
func (c Config) Validate() error {
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("lab name %q: use 1 to 10 lower-case letters and digits, starting with a letter (it prefixes interface names, which are at most 15 bytes)", c.Name)
	}
	if c.Nodes < 1 || c.Nodes > 50 {
		return fmt.Errorf("nodes: %d: use 1 to 50", c.Nodes)
	}
	for _, p := range []struct {
		what string
		p    netip.Prefix
		max  int
	}{{"lan", c.LAN, 26}, {"upstream", c.Upstream, 30}} {
		if !p.p.IsValid() || !p.p.Addr().Is4() || p.p.Bits() > p.max {
			return fmt.Errorf("%s: %v: use an IPv4 prefix of /%d or shorter", p.what, p.p, p.max)
		}
		if p.p.Masked() != p.p {
			return fmt.Errorf("%s: %v has host bits set; use %v", p.what, p.p, p.p.Masked())
		}
	}
	if c.LAN.Overlaps(c.Upstream) {
		return fmt.Errorf("lan %v and upstream %v overlap", c.LAN, c.Upstream)
	}
	if !c.LAN6.IsValid() || !c.LAN6.Addr().Is6() || c.LAN6.Addr().Is4In6() || c.LAN6.Bits() != 64 {
		return fmt.Errorf("lan6: %v: use an IPv6 /64 (leave it out to derive %v from the lan)", c.LAN6, LAN6For(c.LAN))
	}
	if c.LAN6.Masked() != c.LAN6 {
		return fmt.Errorf("lan6: %v has host bits set; use %v", c.LAN6, c.LAN6.Masked())
	}
	for _, p := range []struct {
		what string
		p    netip.Prefix
		v4   bool
	}{{"service CIDR", c.ServiceCIDR, true}, {"cluster CIDR", c.ClusterCIDR, true}, {"IPv6 service CIDR", c.ServiceCIDR6, false}, {"IPv6 cluster CIDR", c.ClusterCIDR6, false}} {
		if !p.p.IsValid() {
			return fmt.Errorf("service and cluster CIDRs of both families must be set")
		}
		if p.p.Addr().Is4() != p.v4 || p.p.Addr().Is4In6() {
			return fmt.Errorf("%s %v: use an %s prefix", p.what, p.p, map[bool]string{true: "IPv4", false: "IPv6"}[p.v4])
		}
		if p.p.Masked() != p.p {
			return fmt.Errorf("%s %v has host bits set; use %v", p.what, p.p, p.p.Masked())
		}
		if p.p.Overlaps(c.LAN) || p.p.Overlaps(c.Upstream) || p.p.Overlaps(c.LAN6) {
			return fmt.Errorf("%v overlaps the lab's LAN or upstream", p.p)
		}
	}
	if c.ServiceCIDR.Overlaps(c.ClusterCIDR) {
		return fmt.Errorf("service CIDR %v and cluster CIDR %v overlap", c.ServiceCIDR, c.ClusterCIDR)
	}
	if c.ServiceCIDR6.Overlaps(c.ClusterCIDR6) {
		return fmt.Errorf("IPv6 service CIDR %v and cluster CIDR %v overlap", c.ServiceCIDR6, c.ClusterCIDR6)
	}
	if c.NodeCIDRMaskSize <= c.ClusterCIDR.Bits() || c.NodeCIDRMaskSize > 30 {
		return fmt.Errorf("node CIDR mask /%d does not fit in cluster CIDR %v", c.NodeCIDRMaskSize, c.ClusterCIDR)
	}
	if c.Nodes > 1<<(c.NodeCIDRMaskSize-c.ClusterCIDR.Bits()) {
		return fmt.Errorf("cluster CIDR %v holds fewer than %d /%d node ranges", c.ClusterCIDR, c.Nodes, c.NodeCIDRMaskSize)
	}
	// kube-controller-manager splits a cluster CIDR into at most 2^16
	// node ranges.
	if c.NodeCIDRMaskSize6 <= c.ClusterCIDR6.Bits() || c.NodeCIDRMaskSize6 > c.ClusterCIDR6.Bits()+16 || c.NodeCIDRMaskSize6 > 120 {
		return fmt.Errorf("IPv6 node CIDR mask /%d: use /%d to /%d for cluster CIDR %v (kube-controller-manager makes at most 2^16 node ranges)",
			c.NodeCIDRMaskSize6, c.ClusterCIDR6.Bits()+1, min(c.ClusterCIDR6.Bits()+16, 120), c.ClusterCIDR6)
	}
	if c.Nodes > 1<<(c.NodeCIDRMaskSize6-c.ClusterCIDR6.Bits()) {
		return fmt.Errorf("IPv6 cluster CIDR %v holds fewer than %d /%d node ranges", c.ClusterCIDR6, c.Nodes, c.NodeCIDRMaskSize6)
	}
	// Router .1, nodes from .11, the LoadBalancer pool, client, host.
	if 10+c.Nodes >= hosts(c.LAN)-2-lbPoolSize {
		return fmt.Errorf("lan %v is too small for %d nodes and a pool of %d LoadBalancer addresses", c.LAN, c.Nodes, lbPoolSize)
	}
	switch c.PodNetworkMode {
	case "routed", "vxlan", "auto", "bgp":
	default:
		return fmt.Errorf("pod network mode %q: use routed, vxlan, auto or bgp", c.PodNetworkMode)
	}
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		return fmt.Errorf("state dir %q must be an absolute path", c.StateDir)
	}
	return nil
}

// Addresses on the LAN: the router takes the first, nodes start at the
// eleventh, the LAN client and the host take the last two. Each also has
// the IPv6 address whose interface ID reads as its IPv4 host number
// (198.18.0.11 and fdbe:c612::11).

// RouterLAN is the router's address on the LAN, every namespace's gateway.
func (c Config) RouterLAN() netip.Addr { return nth(c.LAN, 1) }

// NodeAddr is node i's (1-based) InternalIP.
func (c Config) NodeAddr(i int) netip.Addr { return nth(c.LAN, 10+i) }

// RouterLAN6 is the router's IPv6 address on the LAN.
func (c Config) RouterLAN6() netip.Addr { return nth6(c.LAN6, 1) }

// NodeAddr6 is node i's (1-based) IPv6 InternalIP.
func (c Config) NodeAddr6(i int) netip.Addr { return nth6(c.LAN6, 10+i) }

// ClientLAN6 is the LAN client's IPv6 address.
func (c Config) ClientLAN6() netip.Addr { return nth6(c.LAN6, hosts(c.LAN)-1) }

// HostLAN6 is the host's IPv6 address on the LAN.
func (c Config) HostLAN6() netip.Addr { return nth6(c.LAN6, hosts(c.LAN)) }

// ClientLAN is the LAN client's address.
func (c Config) ClientLAN() netip.Addr { return nth(c.LAN, hosts(c.LAN)-1) }

// HostLAN is the host's address on the LAN, where kube-apiserver listens.
func (c Config) HostLAN() netip.Addr { return nth(c.LAN, hosts(c.LAN)) }

// RouterUpstream and ExternalAddr are the two ends of the upstream link.
func (c Config) RouterUpstream() netip.Addr { return nth(c.Upstream, 1) }

// ExternalAddr is the external client's address, behind the router.
func (c Config) ExternalAddr() netip.Addr { return nth(c.Upstream, 2) }

// FirstServiceIP is the address of the `kubernetes` Service.
func (c Config) FirstServiceIP() netip.Addr { return c.ServiceCIDR.Masked().Addr().Next() }

// NodeName is node i's (1-based) Node object name.
func (c Config) NodeName(i int) string { return fmt.Sprintf("node%d", i) }

// Namespace names. Every one starts with Prefix.

// Prefix starts every network namespace name of the lab.
func (c Config) Prefix() string { return c.Name + "-" }

// LANNamespace holds the LAN bridge.
func (c Config) LANNamespace() string { return c.Prefix() + "lan" }

// RouterNamespace holds the router and BIRD.
func (c Config) RouterNamespace() string { return c.Prefix() + "router" }

// ClientNamespace is the client directly on the LAN.
func (c Config) ClientNamespace() string { return c.Prefix() + "client" }

// ExternalNamespace is the client behind the router.
func (c Config) ExternalNamespace() string { return c.Prefix() + "external" }

// NodeNamespace is node i's (1-based) namespace.
func (c Config) NodeNamespace(i int) string { return c.Prefix() + c.NodeName(i) }

// HostLink is the host end of the host's veth to the LAN.
func (c Config) HostLink() string { return c.Name + "-host" }

func hosts(p netip.Prefix) int { return 1<<(32-p.Bits()) - 2 }

// nth6 is the address of the /64 p whose interface ID is n's decimal digits
// read as hex: 11 gives ::11. Distinct numbers give distinct addresses, and
// no such address has a hex letter in it.
func nth6(p netip.Prefix, n int) netip.Addr {
	iid, _ := strconv.ParseUint(strconv.Itoa(n), 16, 64)
	a := p.Masked().Addr().As16()
	binary.BigEndian.PutUint64(a[8:], iid)
	return netip.AddrFrom16(a)
}

func nth(p netip.Prefix, n int) netip.Addr {
	a := p.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
