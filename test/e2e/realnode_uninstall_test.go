package e2e

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/berthnet/berth/lab"
	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/lab/realnode"
	"github.com/berthnet/berth/test/labtest"
	"github.com/berthnet/berth/xds/provision"
)

// TestRealNodeUninstall: helm uninstall of Berth, done as docs/install.md
// says (the workloads on the pod network deleted first), leaves nothing of
// Berth's on the nodes: the agents, stopped with their DaemonSet gone,
// remove their links, routes, nftables tables and CNI files. The kernel's
// own listing of each node's network namespace and the node's private CNI
// folders are the proof. The lab goes down cleanly afterwards (labtest's
// cleanup).
func TestRealNodeUninstall(t *testing.T) {
	t.Parallel()
	l, ctx := labtest.Start(t, 15*time.Minute, "--nodes", "2")
	c := l.Client(t)
	cfg := l.Config(t)
	l.Demo(ctx, t)

	// Before: every node has Berth's state, so the checks below can fail.
	for i := 1; i <= cfg.Nodes; i++ {
		left := berthLeftOnNode(t, l.Namespace(t, cfg.NodeName(i)), cniDirs(cfg, i))
		for _, want := range []string{"link berth0", "nft table inet berth-proxy", "nft table inet berth-podnet", "file 10-berth.conflist", "file berth-cni"} {
			if !slices.Contains(left, want) {
				t.Fatalf("%s before the uninstall: no %s in %v", cfg.NodeName(i), want, left)
			}
		}
	}

	// The operator's first step: the workloads on the pod network go.
	if err := c.CoreV1().Namespaces().Delete(ctx, lab.DemoNamespace, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.AppsV1().Deployments("kube-system").Delete(ctx, "coredns", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodsGone(ctx, t, c, lab.DemoNamespace, "")
	waitPodsGone(ctx, t, c, "kube-system", "k8s-app=kube-dns")
	// The demo's Gateway went with its namespace; its Envoy fleet is
	// Berth's controller's, in berth-system, on the pod network: deleted
	// as docs/install.md says (the controller leaves a fleet whose Gateway
	// went while it was not watching).
	for {
		_, err := c.CoreV1().Namespaces().Get(ctx, lab.DemoNamespace, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("namespace %s not gone: %v", lab.DemoNamespace, err)
		}
		time.Sleep(time.Second)
	}
	fleets := provision.LabelManagedBy + "=" + provision.ManagedBy
	if err := c.AppsV1().Deployments(lab.Namespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: fleets}); err != nil {
		t.Fatal(err)
	}
	waitPodsGone(ctx, t, c, lab.Namespace, provision.LabelComponent+"="+provision.Component)

	in := labtest.BuildImages(t)
	cmd := exec.CommandContext(ctx, in.Helm, "uninstall", lab.ReleaseName, "--namespace", lab.Namespace, "--kubeconfig", cfg.AdminKubeconfig())
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, out)
	}
	// Every Berth pod gone: the agents (their removal done) and the
	// controller (on the pod network: its teardown needs berth-cni, which
	// the agents keep until it is done).
	waitPodsGone(ctx, t, c, lab.Namespace, "")

	for i := 1; i <= cfg.Nodes; i++ {
		if left := berthLeftOnNode(t, l.Namespace(t, cfg.NodeName(i)), cniDirs(cfg, i)); len(left) > 0 {
			t.Errorf("%s after helm uninstall still has %v", cfg.NodeName(i), left)
		}
	}
	// The agents' Event, when they could still post it (helm usually
	// took their rights away first).
	if evs, err := c.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{FieldSelector: "reason=BerthUninstalled"}); err == nil {
		for _, e := range evs.Items {
			t.Logf("Event on %s: %s", e.InvolvedObject.Name, e.Message)
		}
	}
}

// berthLeftOnNode lists what of Berth's a node holds, from the kernel of its
// network namespace and from its CNI folders: links named berth* or with
// berth-cni's host veth prefix (bv), routes of Berth's protocols (98 the
// pod network's, 99 BGP's), nftables tables named berth-*, and files of
// Berth's in the CNI folders.
func berthLeftOnNode(t *testing.T, ns *netns.Namespace, cniDirs []string) []string {
	t.Helper()
	var left []string
	links, err := ns.Netlink().LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if name := l.Attrs().Name; strings.HasPrefix(name, "berth") || strings.HasPrefix(name, "bv") {
			left = append(left, "link "+name)
		}
	}
	for _, proto := range []netlink.RouteProtocol{98, 99} {
		for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			routes, err := ns.Netlink().RouteListFiltered(fam, &netlink.Route{Protocol: proto}, netlink.RT_FILTER_PROTOCOL)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range routes {
				left = append(left, "route "+r.String())
			}
		}
	}
	var out []byte
	if err := ns.Do(func() (err error) {
		out, err = exec.Command("nft", "list", "tables").CombinedOutput()
		return err
	}); err != nil {
		t.Fatalf("nft list tables: %v: %s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) == 3 && strings.HasPrefix(f[2], "berth") {
			left = append(left, "nft "+line)
		}
	}
	for _, dir := range cniDirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.Contains(e.Name(), "berth") {
				left = append(left, "file "+e.Name())
			}
		}
	}
	return left
}

// cniDirs are node i's /etc/cni/net.d and /opt/cni/bin, as the host sees
// them (the real node bind-mounts them from its folder).
func cniDirs(cfg lab.Config, i int) []string {
	n := realnode.Config{Dir: cfg.RealNodeDir(i)}
	return []string{n.Private("/etc/cni/net.d"), n.Private("/opt/cni/bin")}
}

// waitPodsGone waits until namespace ns has no pod matching selector (or
// the namespace itself is gone).
func waitPodsGone(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, selector string) {
	t.Helper()
	for {
		pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if (err == nil && len(pods.Items) == 0) || apierrors.IsNotFound(err) {
			return
		}
		select {
		case <-ctx.Done():
			var names []string
			if pods != nil {
				for _, p := range pods.Items {
					names = append(names, p.Name+" ("+string(p.Status.Phase)+", on "+p.Spec.NodeName+")")
				}
			}
			t.Fatalf("pods of %s %q still there: %v (%v)", ns, selector, names, err)
		case <-time.After(time.Second):
		}
	}
}
