package realnode

import (
	"context"
	"net/netip"
	"strings"
	"testing"
)

// TestConfigCheck: each missing or malformed field is named in the error,
// before anything is started.
func TestConfigCheck(t *testing.T) {
	good := Config{
		Name: "node1", Netns: "lab-node1", Address: netip.MustParseAddr("198.18.0.11"),
		Dir: "/run/berth-lab/x/node1", BinDir: "/opt/berth/bin/node", Kubeconfig: "/k", SandboxImage: "ghcr.io/berthnet/pause:v1",
	}
	if err := good.Check(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no name", func(c *Config) { c.Name = "" }, `node name ""`},
		{"name with slash", func(c *Config) { c.Name = "a/b" }, `node name "a/b": a lowercase RFC 1123 subdomain`},
		{"upper case name", func(c *Config) { c.Name = "Node1" }, `node name "Node1": a lowercase RFC 1123 subdomain`},
		{"netns path", func(c *Config) { c.Netns = "/var/run/netns/x" }, "want a name under /var/run/netns"},
		{"no address", func(c *Config) { c.Address = netip.Addr{} }, "node node1: no address"},
		{"IPv6 first", func(c *Config) {
			c.Address, c.Address6 = netip.MustParseAddr("fdbe::11"), netip.MustParseAddr("198.18.0.11")
		}, "a dual-stack node wants an IPv4 address and an IPv6 one, in that order"},
		{"two IPv4", func(c *Config) { c.Address6 = netip.MustParseAddr("198.18.0.12") }, "a dual-stack node wants an IPv4 address and an IPv6 one"},
		{"relative dir", func(c *Config) { c.Dir = "node1" }, `state folder "node1" is not an absolute path`},
		{"relative bin", func(c *Config) { c.BinDir = "bin/node" }, `binary folder "bin/node" is not an absolute path`},
		{"no kubeconfig", func(c *Config) { c.Kubeconfig = "" }, "no kubeconfig"},
		{"no sandbox image", func(c *Config) { c.SandboxImage = "" }, "no sandbox image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			err := c.Check()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if _, err := Start(context.Background(), c); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start: %v, want the same error", err)
			}
		})
	}
	t.Run("missing binary", func(t *testing.T) {
		c := good
		c.BinDir = t.TempDir()
		if _, err := Start(context.Background(), c); err == nil || !strings.Contains(err.Error(), "kubelet not found in "+c.BinDir+": run `make test-deps`") {
			t.Fatalf("Start: %v, want kubelet not found with the command that builds it", err)
		}
	})
}

// TestCgroupRootPerNode: two labs' nodes of the same name (every lab has a
// node1) get cgroupRoots of their own, so one node's Stop, which ends every
// process under its cgroupRoot, never reaches the other's pods.
func TestCgroupRootPerNode(t *testing.T) {
	a := Config{Name: "node1", Netns: "laba-node1"}
	b := Config{Name: "node1", Netns: "labb-node1"}
	if a.CgroupRoot() != "/berth-node-laba-node1" || b.CgroupRoot() != "/berth-node-labb-node1" {
		t.Fatalf("cgroupRoots %q and %q, want /berth-node-laba-node1 and /berth-node-labb-node1", a.CgroupRoot(), b.CgroupRoot())
	}
}
