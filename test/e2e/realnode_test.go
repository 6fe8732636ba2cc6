package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthnet/berth/lab"
	"github.com/berthnet/berth/test/labtest"
)

// TestRealNodes: a lab of real nodes, as an operator builds a cluster: the
// kubelet v1.37 and containerd v2 on every node, Berth installed with
// `helm install` of its chart from its images (built from this tree), and
// CoreDNS. The agents run as the chart's DaemonSet pods on the host network
// and install berth-cni into each node's own CNI folder; containerd's CRI
// calls it for every pod. The demo then passes on real pods (pod to pod
// across nodes, the service proxy, LoadBalancer addresses over ARP and BGP,
// the Gateway's xDS, NetworkPolicy, and kubectl exec ping / nslookup / wget
// by name and kubectl logs), and DNS resolves a headless Service to its
// pods' addresses, over either family's DNS address.
func TestRealNodes(t *testing.T) {
	t.Parallel()
	l, ctx := labtest.Start(t, 10*time.Minute)
	c := l.Client(t)
	cfg := l.Config(t)

	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != 3 {
		t.Fatalf("%d nodes, want 3", len(nodes.Items))
	}
	for i, n := range nodes.Items {
		info := n.Status.NodeInfo
		if !strings.HasPrefix(info.KubeletVersion, "v1.37.") || !strings.HasPrefix(info.ContainerRuntimeVersion, "containerd://2.") {
			t.Errorf("node %s: kubelet %s, runtime %s: want the kubelet v1.37 and containerd 2 of bin/node", n.Name, info.KubeletVersion, info.ContainerRuntimeVersion)
		}
		var ips []string
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				ips = append(ips, a.Address)
			}
		}
		want := []string{cfg.NodeAddr(i + 1).String(), cfg.NodeAddr6(i + 1).String()}
		if strings.Join(ips, ",") != strings.Join(want, ",") {
			t.Errorf("node %s: InternalIPs %v, want %v (the kubelet's --node-ip, IPv4 first)", n.Name, ips, want)
		}
		if n.Labels[lab.LabLabel] != l.Name {
			t.Errorf("node %s: label %s=%q, want %q (the kubelet's --node-labels)", n.Name, lab.LabLabel, n.Labels[lab.LabLabel], l.Name)
		}
	}

	// Berth as the chart runs it, from the images under test.
	pods, err := c.CoreV1().Pods(lab.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	agents := map[string]bool{}
	controllers := 0
	for _, p := range pods.Items {
		switch p.Labels["app.kubernetes.io/component"] {
		case "agent":
			if img := p.Spec.Containers[0].Image; img != "ghcr.io/berthnet/berth-agent:"+labtest.TestVersion || !p.Spec.HostNetwork || p.Status.Phase != corev1.PodRunning {
				t.Errorf("agent pod %s: image %s, hostNetwork %v, phase %s: want the image under test, on the host network, Running", p.Name, img, p.Spec.HostNetwork, p.Status.Phase)
			}
			agents[p.Spec.NodeName] = true
		case "controller":
			if img := p.Spec.Containers[0].Image; img != "ghcr.io/berthnet/berth-controller:"+labtest.TestVersion || p.Status.Phase != corev1.PodRunning {
				t.Errorf("controller pod %s: image %s, phase %s", p.Name, img, p.Status.Phase)
			}
			controllers++
		}
	}
	if len(agents) != 3 || controllers == 0 {
		t.Errorf("agents on %v, %d controllers: want an agent on each of the 3 nodes and a controller", agents, controllers)
	}
	// The agent installed berth-cni and its config into each node's own
	// CNI folders (inside the node's mount namespace; on the host, under
	// the node's folder).
	for i := 1; i <= 3; i++ {
		root := filepath.Join(cfg.RealNodeDir(i), "root")
		for _, f := range []string{"opt/cni/bin/berth-cni", "etc/cni/net.d/10-berth.conflist"} {
			if _, err := os.Stat(filepath.Join(root, f)); err != nil {
				t.Errorf("node%d: /%s: %v", i, f, err)
			}
		}
	}

	echo := l.Demo(ctx, t)

	// A headless Service answers with its pods' addresses.
	_, err = c.CoreV1().Services(lab.DemoNamespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo-headless"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "echo"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, server := range []string{cfg.ClusterDNS().String(), cfg.ClusterDNS6().String()} {
		name := "echo-headless." + lab.DemoNamespace + ".svc.cluster.local"
		out := waitExec(ctx, t, l, func(out string) bool {
			for _, p := range echo {
				if !strings.Contains(out, "Address: "+p.Status.PodIP+"\n") {
					return false
				}
			}
			return true
		}, "nslookup", name, server)
		t.Logf("nslookup %s %s:\n%s", name, server, out)
	}

	// An operator changes the pod network mode: the agents roll one node
	// at a time, the LoadBalancer address stays, and pods still reach each
	// other across nodes afterwards.
	helmUpgrade(ctx, t, l, c, "podNetwork.mode=vxlan")
	if out, err := l.Kubectl(ctx, "-n", lab.DemoNamespace, "exec", lab.ToolboxPod, "--", "ping", "-c", "1", "-W", "5", echo[len(echo)-1].Status.PodIP); err != nil {
		t.Errorf("ping across nodes after the move to vxlan: %v\n%s", err, out)
	}

	// An agent crash (SIGKILL: the kubelet restarts the container) and a
	// pod deletion (SIGTERM: the DaemonSet makes a new one): each comes back
	// ready, and pods still reach each other across nodes.
	for _, kill := range []string{"--kill=true", "--kill=false"} {
		if out, err := l.Berthctl(ctx, "lab", "restart-agent", "--name", l.Name, "--node", "2", kill); err != nil {
			t.Fatalf("lab restart-agent %s: %v\n%s", kill, err, out)
		}
		if out, err := l.Kubectl(ctx, "-n", lab.DemoNamespace, "exec", lab.ToolboxPod, "--", "ping", "-c", "1", "-W", "5", echo[1].Status.PodIP); err != nil {
			t.Errorf("ping node1 → node2's pod after restart-agent %s: %v\n%s", kill, err, out)
		}
	}

	// A reboot stand-in: node3's kubelet, pods and containerd stop and
	// start again. Its pods come back through berth-cni with addresses of
	// its range, reachable from node1, and its address store holds exactly
	// the addresses of the pods that run there (none leaked by the pods
	// that died with the node).
	if out, err := l.Berthctl(ctx, "lab", "restart-node", "--name", l.Name, "--node", "3"); err != nil {
		t.Fatalf("lab restart-node: %v\n%s", err, out)
	}
	// The pod's status may still show its address from before until the
	// kubelet has synced it: wait until node3's echo pod answers a ping.
	for deadline := time.Now().Add(3 * time.Minute); ; {
		back, err := lab.WaitEchoPods(ctx, c, lab.DemoNamespace, "app=echo", 3, 3*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		ip := back[len(back)-1].Status.PodIP // sorted by node: node3's
		out, err := l.Kubectl(ctx, "-n", lab.DemoNamespace, "exec", lab.ToolboxPod, "--", "ping", "-c", "1", "-W", "2", ip)
		if err == nil && back[len(back)-1].Spec.NodeName == "node3" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node3's echo pod %s after node3's restart: %v\n%s", ip, err, out)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(time.Second):
		}
	}
	store := filepath.Join(cfg.RealNodeDir(3), "root", "var", "lib", "berth", "cni", "berth")
	for deadline := time.Now().Add(time.Minute); ; {
		running, err := c.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=node3"})
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, p := range running.Items {
			if !p.Spec.HostNetwork && p.DeletionTimestamp == nil {
				for _, ip := range p.Status.PodIPs {
					want = append(want, ip.IP)
				}
			}
		}
		entries, err := os.ReadDir(store)
		if err != nil {
			t.Fatal(err)
		}
		var have []string
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), ".") {
				have = append(have, e.Name())
			}
		}
		slices.Sort(want)
		slices.Sort(have)
		if slices.Equal(have, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("node3's address store %s holds %v; its running pods have %v", store, have, want)
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// waitExec runs a command in the demo's toolbox pod until its output
// satisfies ok, or fails the test at ctx's end.
func waitExec(ctx context.Context, t *testing.T, l *labtest.Lab, ok func(string) bool, args ...string) string {
	t.Helper()
	var out string
	var err error
	for {
		out, err = l.Kubectl(ctx, append([]string{"-n", lab.DemoNamespace, "exec", lab.ToolboxPod, "--"}, args...)...)
		if err == nil && ok(out) {
			return out
		}
		select {
		case <-ctx.Done():
			t.Fatalf("kubectl exec %s %v: %v\n%s", lab.ToolboxPod, args, err, out)
		case <-time.After(time.Second):
		}
	}
}
