package realnode

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/berthnet/berth/lab/netns"
)

// Paths on the node that are the node's own: each is bind-mounted, inside the
// node's mount namespace, from a folder under Config.Dir (named by Private).
var privatePaths = []string{
	"/etc/cni/net.d",
	"/opt/cni/bin",
	"/var/lib/kubelet",
	"/var/lib/containerd",
	"/var/lib/berth",
	// libcni's result cache, which containerd's CRI keeps per pod.
	"/var/lib/cni",
	"/run/containerd",
	"/var/log/pods",
	"/var/log/containers",
}

// Config describes one lab node.
type Config struct {
	// Name is the Node's name.
	Name string
	// Netns is the name of the node's network namespace (under /var/run/netns).
	Netns string
	// Address is the node's address in that namespace: the kubelet's --node-ip,
	// and where it serves (port 10250).
	Address netip.Addr
	// Address6 is the node's IPv6 address, for a dual-stack node (optional):
	// the kubelet reports both as InternalIPs, IPv4 first.
	Address6 netip.Addr
	// Labels are the Node's labels, set by the kubelet at registration
	// (--node-labels: no kubernetes.io or k8s.io prefix but the ones the
	// NodeRestriction admission plugin allows).
	Labels map[string]string
	// ClusterDNS are the cluster DNS Service's addresses the kubelet writes
	// into pods' resolv.conf, with ClusterDomain (default cluster.local).
	ClusterDNS    []netip.Addr
	ClusterDomain string
	// Dir is the node's state folder on the host; every private path of the
	// node lives under it (see Private), with its configs and logs.
	Dir string
	// BinDir holds kubelet, containerd, containerd-shim-runc-v2, ctr and runc
	// (`make test-deps` builds them into bin/node).
	BinDir string
	// Kubeconfig is the kubelet's credentials for the API server, reachable
	// from the node's network namespace.
	Kubeconfig string
	// ClientCAFile is the CA whose client certificates the kubelet accepts:
	// the API server's kubelet client certificate (--kubelet-client-certificate),
	// for exec, logs, port-forward and attach. Empty: only bearer tokens.
	ClientCAFile string
	// SandboxImage is the pod sandbox image containerd is configured with;
	// it must be imported (ImportImage), since nothing is ever pulled.
	SandboxImage string
}

// Check says what is wrong with the configuration, if anything.
func (c Config) Check() error {
	switch {
	case len(validation.IsDNS1123Subdomain(c.Name)) > 0:
		return fmt.Errorf("node name %q: %s", c.Name, strings.Join(validation.IsDNS1123Subdomain(c.Name), "; "))
	case c.Netns == "" || strings.Contains(c.Netns, "/"):
		return fmt.Errorf("node %s: network namespace %q: want a name under %s", c.Name, c.Netns, netns.Dir)
	case !c.Address.IsValid():
		return fmt.Errorf("node %s: no address", c.Name)
	case c.Address6.IsValid() && (!c.Address.Is4() || !c.Address6.Is6() || c.Address6.Is4In6()):
		return fmt.Errorf("node %s: addresses %s and %s: a dual-stack node wants an IPv4 address and an IPv6 one, in that order", c.Name, c.Address, c.Address6)
	case !filepath.IsAbs(c.Dir):
		return fmt.Errorf("node %s: state folder %q is not an absolute path", c.Name, c.Dir)
	case !filepath.IsAbs(c.BinDir):
		return fmt.Errorf("node %s: binary folder %q is not an absolute path", c.Name, c.BinDir)
	case c.Kubeconfig == "":
		return fmt.Errorf("node %s: no kubeconfig for the kubelet", c.Name)
	case c.SandboxImage == "":
		return fmt.Errorf("node %s: no sandbox image", c.Name)
	}
	return nil
}

// Private is the host folder that the node sees at path (one of its private
// paths, e.g. /etc/cni/net.d).
func (c Config) Private(path string) string {
	return filepath.Join(c.Dir, "root", path)
}

// CgroupRoot is the kubelet's cgroupRoot: every pod's cgroup is beneath it,
// in each cgroup v1 hierarchy. It is named after the node's network
// namespace, which no other node on the machine shares (two labs both have a
// node1), so stopping one node never touches another's pods.
func (c Config) CgroupRoot() string { return "/berth-node-" + c.Netns }

func (c Config) mntns() string  { return filepath.Join(c.Dir, "ns", "mnt") }
func (c Config) socket() string { return "/run/containerd/containerd.sock" }
func (c Config) logFile(n string) string {
	return filepath.Join(c.Dir, n+".log")
}
