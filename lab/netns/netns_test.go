package netns_test

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/netnstest"
)

func TestMain(m *testing.M) { netnstest.Main(m) }

// Two namespaces on a bridge in a third reach each other over TCP.
func TestBridgedNamespacesTalk(t *testing.T) {
	lan := netnstest.New(t)
	a := netnstest.New(t)
	b := netnstest.New(t)
	if err := lan.AddBridge("br0"); err != nil {
		t.Fatal(err)
	}
	for i, ns := range []*netns.Namespace{a, b} {
		port := []string{"pa", "pb"}[i]
		if err := netns.Veth(lan, port, ns, "eth0"); err != nil {
			t.Fatal(err)
		}
		if err := lan.SetMaster(port, "br0"); err != nil {
			t.Fatal(err)
		}
		if err := ns.AddAddress("eth0", []string{"192.0.2.1/24", "192.0.2.2/24"}[i]); err != nil {
			t.Fatal(err)
		}
	}

	if seen := netnstest.Connect(t, a, b, "192.0.2.1:7000"); !strings.HasPrefix(seen, "192.0.2.2:") {
		t.Fatalf("a saw the connection from %q, want b (192.0.2.2)", seen)
	}

	// The host namespace cannot reach the test addresses: nothing leaks out.
	host, err := netns.Host()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	links, err := host.Links()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l == "pa" || l == "pb" {
			t.Errorf("link %s leaked into the host namespace", l)
		}
	}
}

// Deleting a namespace removes its processes and links, and the peers of its
// veth pairs in other namespaces; nothing is left to find by listing.
func TestDeleteLeavesNothing(t *testing.T) {
	netnstest.RequireRoot(t)
	name := netnstest.Prefix() + "del"
	ns, err := netns.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	other := netnstest.New(t)
	if err := netns.Veth(other, "toDel", ns, "eth0"); err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command(context.Background(), "sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()

	pids := waitForPids(t, ns)
	if len(pids) == 0 {
		t.Fatal("sleep never showed up in the namespace")
	}
	if err := ns.Delete(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waitErr:
	case <-time.After(15 * time.Second):
		t.Fatal("process in the deleted namespace is still running")
	}
	for _, pid := range pids {
		if netns.Alive(pid) {
			t.Errorf("pid %d still alive", pid)
		}
	}
	names, err := netns.List(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 0 {
		t.Errorf("namespaces left: %v", names)
	}
	// The kernel dismantles a namespace in a work queue, so the peer goes
	// shortly after the last reference does.
	deadline := time.Now().Add(10 * time.Second)
	for {
		links, err := other.Links()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(links, "toDel") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("veth peer survived its namespace's deletion")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Deleting again is not an error.
	if err := netns.Remove(name); err != nil {
		t.Errorf("second remove: %v", err)
	}
}

func waitForPids(t *testing.T, ns *netns.Namespace) []int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		pids, err := ns.Pids()
		if err != nil {
			t.Fatal(err)
		}
		for _, pid := range pids {
			cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
			if strings.HasPrefix(string(cmdline), "sleep") {
				return pids
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func TestSysctlIsPerNamespace(t *testing.T) {
	ns := netnstest.New(t)
	if err := ns.Sysctl("net/ipv4/ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := ns.Do(func() (err error) {
		got, err = os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(got)) != "1" {
		t.Fatalf("ip_forward in namespace = %q, want 1", got)
	}
}

func TestCreateRefusesExistingName(t *testing.T) {
	ns := netnstest.New(t)
	if _, err := netns.Create(ns.Name); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second Create(%q) = %v, want an 'already exists' error", ns.Name, err)
	}
}
