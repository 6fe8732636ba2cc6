package netns_test

import (
	"os"
	"os/exec"
	"testing"

	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/netnstest"
)

// On a fresh machine /run/netns is a plain directory. A namespace the kit
// created there must still be deletable, and its name reusable, after someone
// else runs `ip netns add`: iproute2 then bind-mounts /run/netns over itself,
// and a namespace mounted on the directory underneath could be neither
// deleted ("device or resource busy") nor created again ("already exists").
//
// The test reproduces the fresh machine in a mount namespace of its own
// (netnstest.FreshRun), so nothing it mounts reaches the host.
func TestNamespacesSurviveIPNetnsAdd(t *testing.T) {
	netnstest.RequireRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("this test runs `ip netns add` (Debian package iproute2): %v", err)
	}
	netnstest.FreshRun(t)

	name := netnstest.Prefix() + "shared"
	ipName := netnstest.Prefix() + "ipadd"
	ns, err := netns.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "add", ipName).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", ipName, err, out)
	}
	if err := ns.Delete(); err != nil {
		t.Fatalf("delete after `ip netns add`: %v", err)
	}
	again, err := netns.Create(name)
	if err != nil {
		t.Fatalf("create %s again after deleting it: %v", name, err)
	}
	if err := again.Delete(); err != nil {
		t.Fatalf("delete the recreated namespace: %v", err)
	}
	if out, err := exec.Command("ip", "netns", "delete", ipName).CombinedOutput(); err != nil {
		t.Fatalf("ip netns delete %s: %v\n%s", ipName, err, out)
	}
	entries, err := os.ReadDir(netns.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("%s left in %s", e.Name(), netns.Dir)
	}
}
