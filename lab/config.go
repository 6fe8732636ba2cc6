// Package lab runs a bare-metal Kubernetes cluster on one machine: nodes, a
// router and clients as network namespaces on a lab LAN, and a real control
// plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) on the
// host, reachable from the node namespaces over the LAN.
package lab

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
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
	// Upstream is the link between the router and the external client.
	Upstream netip.Prefix `json:"upstream"`
	// ServiceCIDR and ClusterCIDR are the cluster's Service and pod ranges.
	ServiceCIDR netip.Prefix `json:"serviceCIDR"`
	ClusterCIDR netip.Prefix `json:"clusterCIDR"`
	// NodeCIDRMaskSize is the size of each node's podCIDR.
	NodeCIDRMaskSize int `json:"nodeCIDRMaskSize"`
	// StateDir holds certificates, kubeconfigs, logs and etcd's data.
	StateDir string `json:"stateDir"`
	// K8sBinDir holds etcd, kube-apiserver, kube-controller-manager,
	// kube-scheduler and kubectl (`make test-deps` builds them into bin/k8s).
	K8sBinDir string `json:"k8sBinDir"`
	// BerthBinDir holds berth-agent and berth-cni (`make build` puts them
	// beside berthctl in bin/).
	BerthBinDir string `json:"berthBinDir"`
	// PodNetworkMode is berth-agent's --pod-network-mode: routed, vxlan
	// or auto.
	PodNetworkMode string `json:"podNetworkMode"`
	// ServiceProxy runs berth-agent's nftables service proxy on the nodes.
	ServiceProxy bool `json:"serviceProxy"`
}

// StateRoot is where labs keep their state by default: a tmpfs, cleared at
// boot like the network namespaces it describes.
const StateRoot = "/run/berth-lab"

// DefaultName is the name of the lab `make run` starts.
const DefaultName = "berth"

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,9}$`)

// Default returns the lab `berthctl lab up` starts with no flags.
func Default() Config {
	return Config{
		Name:             DefaultName,
		Nodes:            3,
		LAN:              netip.MustParsePrefix("198.18.0.0/24"),
		Upstream:         netip.MustParsePrefix("203.0.113.0/24"),
		ServiceCIDR:      netip.MustParsePrefix("10.96.0.0/16"),
		ClusterCIDR:      netip.MustParsePrefix("10.244.0.0/16"),
		NodeCIDRMaskSize: 24,
		PodNetworkMode:   "auto",
		ServiceProxy:     true,
		StateDir:         filepath.Join(StateRoot, DefaultName),
	}
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
	for _, p := range []netip.Prefix{c.ServiceCIDR, c.ClusterCIDR} {
		if !p.IsValid() {
			return fmt.Errorf("service and cluster CIDRs must be set")
		}
		if p.Overlaps(c.LAN) || p.Overlaps(c.Upstream) {
			return fmt.Errorf("%v overlaps the lab's LAN or upstream", p)
		}
	}
	if c.ServiceCIDR.Overlaps(c.ClusterCIDR) {
		return fmt.Errorf("service CIDR %v and cluster CIDR %v overlap", c.ServiceCIDR, c.ClusterCIDR)
	}
	if c.NodeCIDRMaskSize <= c.ClusterCIDR.Bits() || c.NodeCIDRMaskSize > 30 {
		return fmt.Errorf("node CIDR mask /%d does not fit in cluster CIDR %v", c.NodeCIDRMaskSize, c.ClusterCIDR)
	}
	if c.Nodes > 1<<(c.NodeCIDRMaskSize-c.ClusterCIDR.Bits()) {
		return fmt.Errorf("cluster CIDR %v holds fewer than %d /%d node ranges", c.ClusterCIDR, c.Nodes, c.NodeCIDRMaskSize)
	}
	// Router .1, nodes from .11, the LoadBalancer pool, client, host.
	if 10+c.Nodes >= hosts(c.LAN)-2-lbPoolSize {
		return fmt.Errorf("lan %v is too small for %d nodes and a pool of %d LoadBalancer addresses", c.LAN, c.Nodes, lbPoolSize)
	}
	switch c.PodNetworkMode {
	case "routed", "vxlan", "auto":
	default:
		return fmt.Errorf("pod network mode %q: use routed, vxlan or auto", c.PodNetworkMode)
	}
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		return fmt.Errorf("state dir %q must be an absolute path", c.StateDir)
	}
	return nil
}

// Addresses on the LAN: the router takes the first, nodes start at the
// eleventh, the LAN client and the host take the last two.

// RouterLAN is the router's address on the LAN, every namespace's gateway.
func (c Config) RouterLAN() netip.Addr { return nth(c.LAN, 1) }

// NodeAddr is node i's (1-based) InternalIP.
func (c Config) NodeAddr(i int) netip.Addr { return nth(c.LAN, 10+i) }

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

func nth(p netip.Prefix, n int) netip.Addr {
	a := p.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
