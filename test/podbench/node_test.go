package podbench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/berthnet/berth/cni"
	"github.com/berthnet/berth/cni/podnet"
	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/lab/realnode"
	"github.com/berthnet/berth/lab/realnode/nodetest"
	"github.com/berthnet/berth/test/kubetest"
	"github.com/berthnet/berth/test/netnstest"
)

// The pods' image, and the nodes' sandbox image: the lab's pause image,
// imported into each node's containerd, never pulled.
const pauseImage = "berth.test/pause:lab"

// podCIDR is both nodes' pod range: each node is alone in its network
// namespace, so the two configurations hand out the same addresses.
var podCIDR = netip.MustParsePrefix("10.250.7.0/24")

// cniKind is the CNI configuration a node runs.
type cniKind string

const (
	berthCNI    cniKind = "berth"
	upstreamCNI cniKind = "upstream"
)

// inputs are what every node of the run shares: binaries, the pause image,
// the API server.
type inputs struct {
	root, binDir, images, berthCNI, upstreamDir string
	env                                         *kubetest.Env
	admin                                       kubernetes.Interface
}

func prepare(b *testing.B) *inputs {
	b.Helper()
	netnstest.RequireRoot(b)
	sweepDead(b)
	root, err := kubetest.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	in := &inputs{root: root, binDir: filepath.Join(root, "bin", "node")}
	if _, err := os.Stat(filepath.Join(in.binDir, ".stamp")); err != nil {
		b.Fatalf("no node binaries in %s: run `make test-deps`", in.binDir)
	}
	in.upstreamDir = os.Getenv("BERTH_UPSTREAM_CNI_DIR")
	if in.upstreamDir == "" {
		b.Skip("BERTH_UPSTREAM_CNI_DIR is not set: hack/bench.sh builds the upstream bridge and host-local plugins and sets it")
	}
	for _, p := range []string{"bridge", "host-local"} {
		if _, err := os.Stat(filepath.Join(in.upstreamDir, p)); err != nil {
			b.Fatalf("upstream plugin %s: %v", p, err)
		}
	}
	dir := b.TempDir()
	in.images = filepath.Join(dir, "images")
	in.berthCNI = filepath.Join(dir, "bin", "berth-cni")
	nodetest.Run(b, root, "go", "build", "-trimpath", "-o", in.berthCNI, "./cmd/berth-cni")
	nodetest.Run(b, root, "go", "build", "-trimpath", "-o", filepath.Join(in.images, "berth-pause"), "./build/pause")
	nodetest.Run(b, root, "go", "run", "./hack/images", "-bin", in.images, "-out", in.images, "-registry", "berth.test", "-version", "lab", "-images", "pause")
	in.env = kubetest.Start(b, kubetest.Options{APIServerFlags: map[string]string{"bind-address": "0.0.0.0"}})
	in.admin = kubernetes.NewForConfigOrDie(in.env.Config)
	return in
}

// node is one running real node with its CNI configuration in place.
type node struct {
	kind cniKind
	name string
	ns   *netns.Namespace
	cfg  realnode.Config
	real *realnode.Node
}

// startNode starts a real node (containerd, runc, kubelet from bin/node,
// lab/realnode's settings) in a network namespace of its own, reached over a
// veth from the host where the API server listens, and puts kind's CNI
// configuration in place.
func startNode(ctx context.Context, b *testing.B, in *inputs, kind cniKind) *node {
	b.Helper()
	ns := netnstest.New(b)
	var pid, seq int
	if _, err := fmt.Sscanf(strings.TrimPrefix(ns.Name, "bt"), "%d-%d", &pid, &seq); err != nil {
		b.Fatalf("namespace name %q: %v", ns.Name, err)
	}
	// A /30 of 100.127.0.0/16 of this node's own, as lab/realnode's tests
	// pick them (the lab's LANs are in 198.18.0.0/15).
	id := (pid*8 + seq) % 16384
	hostIP := fmt.Sprintf("100.127.%d.%d", id/64, id%64*4+1)
	nodeIP := netip.MustParseAddr(fmt.Sprintf("100.127.%d.%d", id/64, id%64*4+2))
	host, err := netns.Host()
	nodetest.Must(b, err)
	defer host.Close()
	hostLink := fmt.Sprintf("pb%dx%d", pid, seq)
	nodetest.Must(b, netns.Veth(host, hostLink, ns, "eth0"))
	nodetest.Must(b, host.AddAddress(hostLink, hostIP+"/30"))
	nodetest.Must(b, host.Up(hostLink))
	nodetest.Must(b, ns.AddAddress("eth0", nodeIP.String()+"/30"))
	nodetest.Must(b, ns.Up("eth0"))

	name := "pb-" + string(kind) + "-" + ns.Name
	user := "system:node:" + name
	kubeconfig, _ := in.env.User(b, user, "system:nodes")
	_, err = in.admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:node"},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}},
	}, metav1.CreateOptions{})
	nodetest.Must(b, err)
	nodetest.Must(b, nodetest.PointAt(kubeconfig, hostIP))

	cfg := realnode.Config{
		Name: name, Netns: ns.Name, Address: nodeIP, Dir: filepath.Join(b.TempDir(), "node"),
		BinDir: in.binDir, Kubeconfig: kubeconfig, SandboxImage: pauseImage,
	}
	real, err := realnode.Start(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	n := &node{kind: kind, name: name, ns: ns, cfg: cfg, real: real}
	b.Cleanup(func() {
		if b.Failed() {
			for _, f := range []string{"containerd", "kubelet"} {
				if out, err := exec.Command("tail", "-n", "30", filepath.Join(cfg.Dir, f+".log")).Output(); err == nil {
					b.Logf("node %s %s.log (end):\n%s", name, f, out)
				}
			}
		}
		if err := real.Stop(); err != nil {
			b.Errorf("stop node %s: %v", name, err)
		}
	})
	nodetest.Must(b, real.ImportImage(ctx, filepath.Join(in.images, "pause.tar")))
	nodetest.Must(b, real.StartKubelet(ctx))
	nodetest.WaitFor(ctx, b, "node "+name+" registered", func() error {
		_, err := in.admin.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		return err
	})
	patch := fmt.Sprintf(`{"spec":{"podCIDR":%q,"podCIDRs":[%q]}}`, podCIDR, podCIDR)
	_, err = in.admin.CoreV1().Nodes().Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	nodetest.Must(b, err)
	switch kind {
	case berthCNI:
		n.installBerth(ctx, b, in)
	case upstreamCNI:
		n.installUpstream(b, in)
	}
	nodetest.WaitFor(ctx, b, "node "+name+" Ready", func() error {
		k, err := in.admin.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range k.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("not Ready: %v", k.Status.Conditions)
	})
	return n
}

// installBerth does what berth-agent's pod network sync does on a node
// (cni/podnet Agent.sync) once the Node has its podCIDR, with the agent's
// defaults: the bridge, forwarding and masquerade from podnet.Desired
// through podnet's Applier in the node's namespace, then berth-cni in
// /opt/cni/bin and the conflist cni.Conflist renders into /etc/cni/net.d.
func (n *node) installBerth(ctx context.Context, b *testing.B, in *inputs) {
	b.Helper()
	self := podnet.Node{Name: n.name, InternalIP: n.cfg.Address, PodCIDRs: []netip.Prefix{podCIDR}}
	var mtu int
	nodetest.Must(b, n.ns.Do(func() error {
		up, err := podnet.FindUplink(self.InternalIP)
		if err != nil {
			return err
		}
		st, err := podnet.Desired(self, []podnet.Node{self}, podnet.Routed, up, 0)
		if err != nil {
			return err
		}
		a, err := podnet.NewApplier()
		if err != nil {
			return err
		}
		mtu = st.MTU
		return a.Apply(ctx, st, up)
	}))
	_, err := cni.InstallPlugin(in.berthCNI, n.cfg.Private("/opt/cni/bin"))
	nodetest.Must(b, err)
	conf, err := cni.Conflist("berth", cni.NetConf{Bridge: podnet.Bridge, MTU: mtu, DataDir: cni.DefaultDataDir, PodCIDRs: []string{podCIDR.String()}})
	nodetest.Must(b, err)
	_, err = cni.WriteAtomic(filepath.Join(n.cfg.Private("/etc/cni/net.d"), cni.ConflistName), conf, 0o644)
	nodetest.Must(b, err)
}

// upstreamConflist is the upstream pair as a cluster would write it for one
// node's range: bridge (the gateway address on the bridge, which also turns
// on forwarding) and host-local over the same podCIDR. No ipMasq: Berth's
// node masquerades with one nftables rule set up before any pod, and a
// per-pod iptables rule would make the baseline slower, not fairer. CNI
// 1.0.0 is what the v1.10.0 plugins speak.
func upstreamConflist(mtu int) ([]byte, error) {
	return json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		"name":       "upstream",
		"plugins": []any{map[string]any{
			"type":      "bridge",
			"bridge":    "cni0",
			"isGateway": true,
			"ipMasq":    false,
			"mtu":       mtu,
			"ipam": map[string]any{
				"type":   "host-local",
				"ranges": [][]map[string]string{{{"subnet": podCIDR.String()}}},
			},
		}},
	}, "", "  ")
}

// installUpstream copies bridge and host-local v1.10.0 into /opt/cni/bin and
// writes their conflist, with the MTU berth-cni's pods get (the uplink's).
func (n *node) installUpstream(b *testing.B, in *inputs) {
	b.Helper()
	for _, p := range []string{"bridge", "host-local"} {
		data, err := os.ReadFile(filepath.Join(in.upstreamDir, p))
		nodetest.Must(b, err)
		_, err = cni.WriteAtomic(filepath.Join(n.cfg.Private("/opt/cni/bin"), p), data, 0o755)
		nodetest.Must(b, err)
	}
	var mtu int
	nodetest.Must(b, n.ns.Do(func() error {
		up, err := podnet.FindUplink(n.cfg.Address)
		mtu = up.MTU
		return err
	}))
	conf, err := upstreamConflist(mtu)
	nodetest.Must(b, err)
	_, err = cni.WriteAtomic(filepath.Join(n.cfg.Private("/etc/cni/net.d"), "10-upstream.conflist"), conf, 0o644)
	nodetest.Must(b, err)
}

// bridgePorts counts the pods' veths on the node's bridge: what CNI DEL
// removes.
func (n *node) bridgePorts() (int, error) {
	name := podnet.Bridge
	if n.kind == upstreamCNI {
		name = "cni0"
	}
	br, err := n.ns.Link(name)
	if err != nil {
		return 0, err
	}
	links, err := n.ns.Netlink().LinkList()
	if err != nil {
		return 0, err
	}
	c := 0
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			c++
		}
	}
	return c, nil
}

// reserved is the address store's record of ip, of this node's plugin: the
// proof that a pod's address came through the configuration measured.
func (n *node) reserved(ip string) string {
	if n.kind == berthCNI {
		return filepath.Join(n.cfg.Private("/var/lib/berth"), "cni", "berth", ip)
	}
	return filepath.Join(n.cfg.Private("/var/lib/cni"), "networks", "upstream", ip)
}

// sweepDead cleans the nodes that benchmark processes which died left in
// their temporary folders: netnstest's TestMain has removed their network
// namespaces (and the kubelet and containerd in them), not their pods,
// cgroups and mounts.
func sweepDead(b *testing.B) {
	b.Helper()
	found, _ := filepath.Glob(filepath.Join(os.TempDir(), "BenchmarkPodReady*", "*", "node", "node.json"))
	var swept []string
	kept := map[string]bool{}
	for _, f := range found {
		cfg, err := realnode.Load(filepath.Dir(f))
		if err != nil {
			b.Logf("sweep: %v", err)
			continue
		}
		var kind string
		var pid, seq int
		if _, err := fmt.Sscanf(strings.Replace(cfg.Name, "-bt", " ", 1), "pb-%s %d-%d", &kind, &pid, &seq); err != nil || pid == os.Getpid() || netns.Alive(pid) {
			continue
		}
		if err := cfg.Clean(); err != nil {
			b.Errorf("sweep the node benchmark process %d left in %s: %v", pid, cfg.Dir, err)
			kept[filepath.Dir(filepath.Dir(cfg.Dir))] = true
			continue
		}
		b.Logf("swept the node benchmark process %d left in %s", pid, cfg.Dir)
		swept = append(swept, filepath.Dir(filepath.Dir(cfg.Dir)))
	}
	// <tmp>/BenchmarkPodReadyN/00M/node: the benchmark's whole folder, once
	// every node in it is clean (its other node's node.json is in it).
	for _, d := range swept {
		if !kept[d] && filepath.Dir(d) == filepath.Clean(os.TempDir()) && strings.HasPrefix(filepath.Base(d), "BenchmarkPodReady") {
			_ = os.RemoveAll(d)
		}
	}
}
