package podnet_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/berthnet/berth/cni"
	"github.com/berthnet/berth/cni/podnet"
	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/netnstest"
)

// Remove takes everything the pod network put on a node away, in routed
// and VXLAN mode, and nothing else: another CNI config and plugin, the
// uplink, the pods' veths, another node. A second Remove finds nothing.
func TestRemove(t *testing.T) {
	for _, mode := range []podnet.Mode{podnet.Routed, podnet.VXLAN} {
		t.Run(string(mode), func(t *testing.T) {
			c := newCluster(t)
			c.start(t, mode)
			node := c.nodes[0]
			opts := podnet.AgentOptions{ConfDir: t.TempDir(), BinDir: t.TempDir()}
			for path, data := range map[string]string{
				filepath.Join(opts.ConfDir, "10-berth.conflist"): "{}",
				filepath.Join(opts.ConfDir, "05-other.conflist"): "{}",
				filepath.Join(opts.BinDir, "berth-cni"):          "#!/bin/true",
				filepath.Join(opts.BinDir, "loopback"):           "#!/bin/true",
			} {
				if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			linksBefore := links(t, node)
			for _, want := range []string{"berth0", "eth0"} {
				if !slices.Contains(linksBefore, want) {
					t.Fatalf("before: no link %s in %v", want, linksBefore)
				}
			}
			if mode == podnet.VXLAN && !slices.Contains(linksBefore, "berth.vxlan") {
				t.Fatalf("before: no link berth.vxlan in %v", linksBefore)
			}
			if n := berthRoutes(t, node); n != 1 {
				t.Fatalf("before: %d routes of protocol 98, want 1 (to node1's pods)", n)
			}
			if got := netnstest.NftTables(t, node); !strings.Contains(got, "table inet berth-podnet\n") {
				t.Fatalf("before: no table inet berth-podnet in\n%s", got)
			}

			if n := attached(t, node); n != 1 {
				t.Fatalf("before: %d links on berth0, want 1 (the pod's)", n)
			}
			var first, second podnet.Removed
			if err := node.Do(func() (err error) {
				first, err = podnet.Remove(context.Background(), opts, false)
				return err
			}); err != nil {
				t.Fatalf("remove: %v", err)
			}
			wantLinks := []string{"berth0"}
			if mode == podnet.VXLAN {
				wantLinks = []string{"berth.vxlan", "berth0"}
			}
			if !slices.Equal(first.Links, wantLinks) || first.Routes != 1 || !first.Table || len(first.Files) != 2 {
				t.Errorf("first Remove reported %+v, want links %v, 1 route, the table and 2 files", first, wantLinks)
			}
			if err := node.Do(func() (err error) {
				second, err = podnet.Remove(context.Background(), opts, false)
				return err
			}); err != nil {
				t.Fatalf("second remove: %v", err)
			}
			if len(second.Links)+second.Routes+len(second.Files) != 0 || second.Table {
				t.Errorf("second Remove found %+v, want nothing", second)
			}

			after := links(t, node)
			for _, gone := range []string{"berth0", "berth.vxlan"} {
				if slices.Contains(after, gone) {
					t.Errorf("link %s remains: %v", gone, after)
				}
			}
			// What is not Berth's node state stays: the uplink, the pod's veth.
			if len(after) != len(linksBefore)-len(wantLinks) || !slices.Contains(after, "eth0") {
				t.Errorf("links after: %v, before: %v; want only %v gone", after, linksBefore, wantLinks)
			}
			if n := berthRoutes(t, node); n != 0 {
				t.Errorf("%d routes of protocol 98 remain", n)
			}
			if got := netnstest.NftTables(t, node); got != "" {
				t.Errorf("tables remain:\n%s", got)
			}
			for _, f := range []string{"10-berth.conflist", "berth-cni"} {
				for _, dir := range []string{opts.ConfDir, opts.BinDir} {
					if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
						t.Errorf("%s remains in %s", f, dir)
					}
				}
			}
			for _, kept := range []string{filepath.Join(opts.ConfDir, "05-other.conflist"), filepath.Join(opts.BinDir, "loopback")} {
				if _, err := os.Stat(kept); err != nil {
					t.Errorf("another CNI's file went: %v", err)
				}
			}
			// The other node is untouched.
			if !slices.Contains(links(t, c.nodes[1]), "berth0") {
				t.Error("node1 lost its bridge")
			}
		})
	}
}

// With a pod still on the pod network, Remove(keepCNIFiles) takes the
// kernel state away but leaves the CNI config and plugin, which the runtime
// needs to tear that pod down; the pod's veth stays until its pod goes.
func TestRemoveKeepsCNIFilesForPodsLeft(t *testing.T) {
	c := newCluster(t)
	c.start(t, podnet.Routed)
	node := c.nodes[0]
	opts := podnet.AgentOptions{ConfDir: t.TempDir(), BinDir: t.TempDir()}
	conf, plugin := filepath.Join(opts.ConfDir, "10-berth.conflist"), filepath.Join(opts.BinDir, "berth-cni")
	for _, p := range []string{conf, plugin} {
		if err := os.WriteFile(p, []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if n := attached(t, node); n != 1 {
		t.Fatalf("before: %d links on berth0, want 1 (the pod's)", n)
	}
	var r podnet.Removed
	if err := node.Do(func() (err error) {
		r, err = podnet.Remove(context.Background(), opts, true)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(r.Files) != 0 || !slices.Equal(r.Links, []string{"berth0"}) || r.Routes != 1 || !r.Table {
		t.Errorf("Remove reported %+v, want no file, link berth0, 1 route, the table", r)
	}
	for _, p := range []string{conf, plugin} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s went: %v", p, err)
		}
	}
	if !slices.Contains(links(t, node), cni.HostVethName("pod0", "eth0")) {
		t.Errorf("the pod's veth went: %v", links(t, node))
	}
	if n := attached(t, node); n != 0 {
		t.Errorf("%d links on a bridge that is gone", n)
	}
}

func attached(t *testing.T, ns *netns.Namespace) int {
	t.Helper()
	var n int
	if err := ns.Do(func() (err error) {
		n, err = podnet.PodsAttached()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

func links(t *testing.T, ns *netns.Namespace) []string {
	t.Helper()
	l, err := ns.Links()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func berthRoutes(t *testing.T, ns *netns.Namespace) int {
	t.Helper()
	n := 0
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		r, err := ns.Netlink().RouteListFiltered(fam, &netlink.Route{Protocol: 98}, netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			t.Fatal(err)
		}
		n += len(r)
	}
	return n
}
