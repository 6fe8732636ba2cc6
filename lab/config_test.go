package lab

import (
	"crypto/x509"
	"encoding/pem"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultAddresses(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what string
		got  netip.Addr
		want string
	}{
		{"router", c.RouterLAN(), "198.18.0.1"},
		{"node1", c.NodeAddr(1), "198.18.0.11"},
		{"node3", c.NodeAddr(3), "198.18.0.13"},
		{"lan client", c.ClientLAN(), "198.18.0.253"},
		{"host", c.HostLAN(), "198.18.0.254"},
		{"router upstream", c.RouterUpstream(), "203.0.113.1"},
		{"external client", c.ExternalAddr(), "203.0.113.2"},
		{"kubernetes service", c.FirstServiceIP(), "10.96.0.1"},
		{"router v6", c.RouterLAN6(), "fdbe:c612::1"},
		{"node1 v6", c.NodeAddr6(1), "fdbe:c612::11"},
		{"node3 v6", c.NodeAddr6(3), "fdbe:c612::13"},
		{"lan client v6", c.ClientLAN6(), "fdbe:c612::253"},
		{"host v6", c.HostLAN6(), "fdbe:c612::254"},
	} {
		if tc.got.String() != tc.want {
			t.Errorf("%s = %v, want %s", tc.what, tc.got, tc.want)
		}
	}
	if got := c.NodeNamespace(2); got != "berth-node2" {
		t.Errorf("NodeNamespace(2) = %q", got)
	}
	if got := c.HostLink(); len(got) > 15 {
		t.Errorf("host link name %q is longer than an interface name may be", got)
	}
}

// Every bad config is refused with a message that says what to change.
func TestValidateRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"long name", func(c *Config) { c.Name = "waytoolongname" }, "1 to 10"},
		{"name with dash", func(c *Config) { c.Name = "a-b" }, "lower-case letters"},
		{"no nodes", func(c *Config) { c.Nodes = 0 }, "use 1 to 50"},
		{"ipv6 lan", func(c *Config) { c.LAN = netip.MustParsePrefix("fd00::/64") }, "IPv4 prefix"},
		{"host bits", func(c *Config) { c.LAN = netip.MustParsePrefix("198.18.0.7/24") }, "host bits"},
		{"tiny lan", func(c *Config) { c.LAN = netip.MustParsePrefix("198.18.0.0/28") }, "/26 or shorter"},
		{"lan overlaps upstream", func(c *Config) { c.Upstream = netip.MustParsePrefix("198.18.0.0/25") }, "overlap"},
		{"service in cluster", func(c *Config) { c.ServiceCIDR = netip.MustParsePrefix("10.244.128.0/20") }, "overlap"},
		{"cluster cidr too small", func(c *Config) {
			c.ClusterCIDR = netip.MustParsePrefix("10.244.0.0/23")
		}, "fewer than 3"},
		{"relative state dir", func(c *Config) { c.StateDir = "run/lab" }, "absolute"},
		{"ipv4 lan6", func(c *Config) { c.LAN6 = netip.MustParsePrefix("198.19.0.0/24") }, "IPv6 /64"},
		{"lan6 not a /64", func(c *Config) { c.LAN6 = netip.MustParsePrefix("fdbe:c612::/96") }, "IPv6 /64"},
		{"no lan6", func(c *Config) { c.LAN6 = netip.Prefix{} }, "derive fdbe:c612::/64"},
		{"lan6 host bits", func(c *Config) { c.LAN6 = netip.MustParsePrefix("fdbe:c612::1/64") }, "host bits"},
		{"ipv6 service cidr in the ipv4 field", func(c *Config) { c.ServiceCIDR = netip.MustParsePrefix("fd00:10:96::/108") }, "IPv4 prefix"},
		{"ipv4 cluster cidr in the ipv6 field", func(c *Config) { c.ClusterCIDR6 = netip.MustParsePrefix("10.245.0.0/16") }, "IPv6 prefix"},
		{"no ipv6 service cidr", func(c *Config) { c.ServiceCIDR6 = netip.Prefix{} }, "both families"},
		{"ipv6 service cidr in the lan", func(c *Config) { c.ServiceCIDR6 = netip.MustParsePrefix("fdbe:c612::/108") }, "overlaps the lab's LAN"},
		{"ipv6 service in cluster", func(c *Config) { c.ServiceCIDR6 = netip.MustParsePrefix("fd00:10:244::/108") }, "overlap"},
		{"ipv6 node mask too long for the controller manager", func(c *Config) { c.NodeCIDRMaskSize6 = 80 }, "at most 2^16"},
		{"ipv6 node mask outside the cluster cidr", func(c *Config) { c.NodeCIDRMaskSize6 = 48 }, "/57 to /72"},
		{"ipv6 cluster cidr too small", func(c *Config) {
			c.ClusterCIDR6 = netip.MustParsePrefix("fd00:10:244::/63")
		}, "fewer than 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// The lab's certificates chain to its CA with the names clients dial.
func TestPKI(t *testing.T) {
	c := Default()
	c.StateDir = t.TempDir()
	if err := c.writePKI(Ports{APIServer: 6443}); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, c.pki("ca.crt")))

	api := readCert(t, c.pki("apiserver.crt"))
	for _, name := range []string{"198.18.0.254", "10.96.0.1", "kubernetes.default.svc"} {
		if _, err := api.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("API server certificate for %s: %v", name, err)
		}
	}
	node := readCert(t, c.pki("node2.crt"))
	if node.Subject.CommonName != "system:node:node2" || len(node.Subject.Organization) != 1 || node.Subject.Organization[0] != "system:nodes" {
		t.Errorf("node2 certificate subject %v: want the Node authorizer's identity", node.Subject)
	}
	if _, err := node.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("node2 client certificate: %v", err)
	}
	if fi, err := os.Stat(c.pki("ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("ca.key mode: %v %v, want 0600", fi.Mode(), err)
	}
	kc, err := os.ReadFile(c.kubeconfig("admin"))
	if err != nil || !strings.Contains(string(kc), "server: https://198.18.0.254:6443") {
		t.Errorf("admin kubeconfig: %v\n%s", err, kc)
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// BIRD itself accepts the router configuration the lab writes.
func TestBirdConfigParses(t *testing.T) {
	bird, err := exec.LookPath("bird")
	if err != nil {
		t.Fatal("bird not installed: apt-get install bird2 (.ci/run does)")
	}
	c := Default()
	conf := filepath.Join(t.TempDir(), "bird.conf")
	if err := os.WriteFile(conf, []byte(c.birdConfig()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bird, "-p", "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("bird -p rejects the lab config: %v\n%s\n%s", err, out, c.birdConfig())
	}
}

// Each IPv4 LAN gets its own IPv6 /64, so labs on different LANs never
// share one.
func TestLAN6For(t *testing.T) {
	seen := map[netip.Prefix]netip.Prefix{}
	for _, lan := range []string{"198.18.0.0/24", "198.18.1.0/24", "198.19.0.0/24", "198.18.0.64/26", "10.0.0.0/16"} {
		p := netip.MustParsePrefix(lan)
		got := LAN6For(p)
		if got.Bits() != 64 || !netip.MustParsePrefix("fdbe::/16").Contains(got.Addr()) {
			t.Errorf("LAN6For(%v) = %v, want a /64 in fdbe::/16", p, got)
		}
		if other, ok := seen[got]; ok {
			t.Errorf("LAN6For(%v) = LAN6For(%v) = %v", p, other, got)
		}
		seen[got] = p
	}
	if got := LAN6For(netip.MustParsePrefix("198.18.5.0/24")).String(); got != "fdbe:c612:500::/64" {
		t.Errorf("LAN6For(198.18.5.0/24) = %s", got)
	}
}

// The IPv6 pool is in the LAN's /64, clear of every host's address, and
// announced with the IPv4 pool.
func TestLBPools(t *testing.T) {
	c := Default()
	first, last := c.LBPool()
	if first.String() != "198.18.0.237" || last.String() != "198.18.0.252" {
		t.Errorf("LBPool = %v-%v", first, last)
	}
	first6, last6 := c.LBPool6()
	if first6.String() != "fdbe:c612::b:0" || last6.String() != "fdbe:c612::b:f" {
		t.Errorf("LBPool6 = %v-%v", first6, last6)
	}
	hosts := []netip.Addr{c.RouterLAN6(), c.ClientLAN6(), c.HostLAN6()}
	for i := 1; i <= 50; i++ {
		hosts = append(hosts, c.NodeAddr6(i))
	}
	for _, h := range hosts {
		if !c.LAN6.Contains(h) {
			t.Errorf("%v is not in the LAN %v", h, c.LAN6)
		}
		if h.Compare(first6) >= 0 && h.Compare(last6) <= 0 {
			t.Errorf("host address %v is in the pool %v-%v", h, first6, last6)
		}
	}
	m := string(c.LBPoolManifest())
	for _, want := range []string{`name: lab-lan-v6`, `addresses: ["fdbe:c612::b:0-fdbe:c612::b:f"]`, `ipPools: [lab-lan, lab-lan-v6]`} {
		if !strings.Contains(m, want) {
			t.Errorf("pool manifest lacks %q:\n%s", want, m)
		}
	}
}
