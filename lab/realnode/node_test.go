package realnode_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/berthnet/berth/cni"
	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/lab/realnode"
	"github.com/berthnet/berth/lab/realnode/nodetest"
	"github.com/berthnet/berth/test/kubetest"
	"github.com/berthnet/berth/test/netnstest"
)

func TestMain(m *testing.M) { netnstest.Main(m) }

// The test's sandbox image: imported, never pulled (no registry answers to it).
const pauseImage = "berth.test/pause:lab"

// TestPodThroughBerthCNI runs one real node (containerd, runc, kubelet) in its
// own network and mount namespaces against a real API server. With berth-cni
// and its conflist in the node's CNI folders, a Pod of the pause image becomes
// Running with an address from the node's podCIDR that berth-cni's store
// holds and a veth on the node's bridge; once the Pod is deleted, CNI DEL has
// removed both. Stopping the node leaves no process, mount or cgroup, and the
// host's kernel tunables as they were.
func TestPodThroughBerthCNI(t *testing.T) { runNode(t, false) }

// TestCleanAfterRunnerDied: a node whose runner is gone (a crashed `lab up`
// or test) is cleaned from its folder alone, realnode.Load and Clean, while
// its Pod runs: no process, mount or cgroup is left, and the host's kernel
// tunables are back.
func TestCleanAfterRunnerDied(t *testing.T) { runNode(t, true) }

func runNode(t *testing.T, runnerDies bool) {
	netnstest.RequireRoot(t)
	sweepDead(t)
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	binDir := filepath.Join(root, "bin", "node")
	if _, err := os.Stat(filepath.Join(binDir, ".stamp")); err != nil {
		t.Fatalf("no node binaries in %s: run `make test-deps`", binDir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	// The node's network: a veth to the host, where the API server listens,
	// in a /30 of 100.127.0.0/16 of this scenario's own (the lab's LANs are
	// in 198.18.0.0/15 and refuse to overlap a host route). A deleted
	// namespace's veth goes asynchronously: no name or address is reused.
	ns := netnstest.New(t)
	var pid, seq int
	if _, err := fmt.Sscanf(strings.TrimPrefix(ns.Name, "bt"), "%d-%d", &pid, &seq); err != nil {
		t.Fatalf("namespace name %q: %v", ns.Name, err)
	}
	id := (pid*8 + seq) % 16384
	hostIP := fmt.Sprintf("100.127.%d.%d", id/64, id%64*4+1)
	nodeIP := netip.MustParseAddr(fmt.Sprintf("100.127.%d.%d", id/64, id%64*4+2))
	host, err := netns.Host()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	hostLink := fmt.Sprintf("rn%dx%d", pid, seq)
	nodetest.Must(t, netns.Veth(host, hostLink, ns, "eth0"))
	nodetest.Must(t, host.AddAddress(hostLink, hostIP+"/30"))
	nodetest.Must(t, host.Up(hostLink))
	nodetest.Must(t, ns.AddAddress("eth0", nodeIP.String()+"/30"))
	nodetest.Must(t, ns.Up("eth0"))

	// The API server calls the kubelet (logs, exec) on the node's InternalIP
	// with a client certificate the kubelet's clientCAFile signed.
	const kubeletClient = "realnode-test-apiserver-kubelet-client"
	clientCA, clientCert, clientKey := kubeletClientPKI(t, kubeletClient)
	env := kubetest.Start(t, kubetest.Options{APIServerFlags: map[string]string{
		"bind-address":                    "0.0.0.0",
		"kubelet-preferred-address-types": "InternalIP",
		"kubelet-client-certificate":      clientCert,
		"kubelet-client-key":              clientKey,
	}})
	admin := kubernetes.NewForConfigOrDie(env.Config)
	nodeName := "rn-" + ns.Name
	user := "system:node:" + nodeName
	kubeconfig, _ := env.User(t, user, "system:nodes")
	_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: nodeName},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:node"},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}},
	}, metav1.CreateOptions{})
	nodetest.Must(t, err)
	_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: nodeName + "-apiserver"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:kubelet-api-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: kubeletClient}},
	}, metav1.CreateOptions{})
	nodetest.Must(t, err)
	nodetest.Must(t, nodetest.PointAt(kubeconfig, hostIP))

	dir := t.TempDir()
	cfg := realnode.Config{
		Name: nodeName, Netns: ns.Name, Address: nodeIP, Dir: filepath.Join(dir, "node"),
		BinDir: binDir, Kubeconfig: kubeconfig, ClientCAFile: clientCA, SandboxImage: pauseImage,
	}
	images := filepath.Join(dir, "images")
	nodetest.Run(t, root, "go", "build", "-o", filepath.Join(images, "berth-pause"), "./build/pause")
	nodetest.Run(t, root, "go", "run", "./hack/images", "-bin", images, "-out", images, "-registry", "berth.test", "-version", "lab", "-images", "pause")

	// The kubelet sets these host-wide sysctls; Stop must put them back.
	tunables := []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops", "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}
	before := readSysctls(t, tunables)

	start := time.Now()
	node, err := realnode.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []string{"containerd", "kubelet"} {
				if b, err := os.ReadFile(filepath.Join(cfg.Dir, n+".log")); err == nil {
					t.Logf("%s.log (end):\n%s", n, lastLines(string(b), 40))
				}
			}
		}
		if !stopped {
			if err := node.Stop(); err != nil {
				t.Errorf("stop node: %v", err)
			}
		}
	})
	nodetest.Must(t, node.ImportImage(ctx, filepath.Join(images, "pause.tar")))
	// berth-cni as berth-agent installs it: the plugin in /opt/cni/bin.
	nodetest.Run(t, root, "go", "build", "-o", cfg.Private("/opt/cni/bin")+"/", "./cmd/berth-cni")
	nodetest.Must(t, node.StartKubelet(ctx))
	nodetest.WaitFor(ctx, t, "node registered", func() error {
		_, err := admin.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		return err
	})
	t.Logf("node %s: kubelet and containerd up, Node registered, in %s", nodeName, time.Since(start).Round(time.Millisecond))
	// The node's pods weigh a machine's CPUs against the host's own work
	// (cpu.shares 1024 per CPU, where the cpu controller is v1; the
	// default 1024 would weigh one process).
	shares, _ := filepath.Glob("/sys/fs/cgroup/cpu*" + cfg.CgroupRoot() + "/cpu.shares")
	if _, err := os.Stat("/sys/fs/cgroup/cpu/cpu.shares"); err == nil && len(shares) == 0 {
		t.Errorf("the host has the v1 cpu controller, but the node's cgroupRoot %s has no cpu.shares", cfg.CgroupRoot())
	}
	for _, f := range shares {
		b, err := os.ReadFile(f)
		nodetest.Must(t, err)
		if got, want := strings.TrimSpace(string(b)), strconv.Itoa(1024*runtime.NumCPU()); got != want {
			t.Errorf("%s = %s, want %s", f, got, want)
		}
	}

	// What berth-agent does once the Node has a podCIDR: the bridge with the
	// gateway address, and the conflist.
	podCIDR := netip.MustParsePrefix("10.250.7.0/24")
	patch := fmt.Sprintf(`{"spec":{"podCIDR":%q,"podCIDRs":[%q]}}`, podCIDR, podCIDR)
	_, err = admin.CoreV1().Nodes().Patch(ctx, nodeName, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	nodetest.Must(t, err)
	nodetest.Must(t, ns.AddBridge(cni.DefaultBridge))
	nodetest.Must(t, ns.AddAddress(cni.DefaultBridge, "10.250.7.1/24"))
	nodetest.Must(t, ns.Up(cni.DefaultBridge))
	conflist, err := cni.Conflist("berth", cni.NetConf{Bridge: cni.DefaultBridge, PodCIDRs: []string{podCIDR.String()}})
	nodetest.Must(t, err)
	nodetest.Must(t, os.WriteFile(filepath.Join(cfg.Private("/etc/cni/net.d"), cni.ConflistName), conflist, 0o644))
	nodetest.WaitFor(ctx, t, "node Ready", func() error {
		n, err := admin.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status != corev1.ConditionTrue {
					return fmt.Errorf("Ready=%s: %s", c.Status, c.Message)
				}
				return nil
			}
		}
		return fmt.Errorf("no Ready condition yet")
	})

	nsName := "rn-" + ns.Name
	_, err = admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName}}, metav1.CreateOptions{})
	nodetest.Must(t, err)
	_, err = admin.CoreV1().ServiceAccounts(nsName).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	nodetest.Must(t, err)
	no := false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pause", Namespace: nsName},
		Spec: corev1.PodSpec{
			NodeName:                     nodeName,
			AutomountServiceAccountToken: &no,
			EnableServiceLinks:           &no,
			Containers:                   []corev1.Container{{Name: "pause", Image: pauseImage, ImagePullPolicy: corev1.PullNever}},
		},
	}
	created := time.Now()
	_, err = admin.CoreV1().Pods(nsName).Create(ctx, pod, metav1.CreateOptions{})
	nodetest.Must(t, err)
	var podIP netip.Addr
	nodetest.WaitFor(ctx, t, "pod Running", func() error {
		p, err := admin.CoreV1().Pods(nsName).Get(ctx, "pause", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			return fmt.Errorf("phase %s, podIP %q, conditions %v, containers %v", p.Status.Phase, p.Status.PodIP, p.Status.Conditions, p.Status.ContainerStatuses)
		}
		podIP, err = netip.ParseAddr(p.Status.PodIP)
		return err
	})
	t.Logf("pod create -> Running with %s: %s", podIP, time.Since(created).Round(time.Millisecond))
	if !podCIDR.Contains(podIP) || podIP == netip.MustParseAddr("10.250.7.1") {
		t.Fatalf("pod address %s is not a pod address of the node's podCIDR %s", podIP, podCIDR)
	}
	store := filepath.Join(cfg.Private("/var/lib/berth"), "cni", "berth", podIP.String())
	if _, err := os.Stat(store); err != nil {
		t.Fatalf("berth-cni's store holds no record of %s: %v", podIP, err)
	}
	if ports := bridgePorts(t, ns); len(ports) != 1 {
		t.Fatalf("bridge ports while the pod runs: %v, want the pod's veth alone", ports)
	}

	// The kubelet serves on the node's address: the API server reaches it for
	// the pod's log, the one line berth-pause says once its handler is in
	// place.
	// (The runtime writes the log as the container prints it: wait for it.)
	for deadline := time.Now().Add(30 * time.Second); ; {
		logs, err := admin.CoreV1().Pods(nsName).GetLogs("pause", &corev1.PodLogOptions{}).DoRaw(ctx)
		if err == nil && string(logs) == "berth-pause: waiting for SIGTERM or SIGINT\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pod's log through the API server and the kubelet: %q, %v; want berth-pause's one line", logs, err)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	// The node's mount namespace, to find its processes by after it ends.
	mntns := inode(t, filepath.Join(cfg.Dir, "ns", "mnt"))
	if runnerDies {
		stopped = true
		left, err := realnode.Load(cfg.Dir)
		nodetest.Must(t, err)
		nodetest.Must(t, left.Clean())
		checkNothingLeft(t, node, cfg, mntns, tunables, before)
		return
	}

	// An image that was not imported: the pull fails at once on the node,
	// against its own loopback, and the pod's events say so; no resolver
	// or registry off the machine is asked.
	missing := pod.DeepCopy()
	missing.Name = "missing"
	missing.Spec.Containers[0].Image = "registry.example/berth/none:v0"
	missing.Spec.Containers[0].ImagePullPolicy = corev1.PullIfNotPresent
	_, err = admin.CoreV1().Pods(nsName).Create(ctx, missing, metav1.CreateOptions{})
	nodetest.Must(t, err)
	nodetest.WaitFor(ctx, t, "the missing image's pull to fail on the node", func() error {
		evs, err := admin.CoreV1().Events(nsName).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=missing,reason=Failed"})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if strings.Contains(e.Message, "127.0.0.1:9") && strings.Contains(e.Message, "connection refused") {
				return nil
			}
			if strings.Contains(e.Message, "registry.example") && strings.Contains(e.Message, "lookup") {
				t.Fatalf("the node asked a resolver for the registry: %s", e.Message)
			}
		}
		return fmt.Errorf("events %v", evs.Items)
	})
	nodetest.Must(t, admin.CoreV1().Pods(nsName).Delete(ctx, "missing", metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))}))

	nodetest.Must(t, admin.CoreV1().Pods(nsName).Delete(ctx, "pause", metav1.DeleteOptions{}))
	nodetest.WaitFor(ctx, t, "pod gone", func() error {
		_, err := admin.CoreV1().Pods(nsName).Get(ctx, "pause", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there: %v", err)
	})
	// The kubelet removes the sandbox (and so calls CNI DEL) after the Pod
	// object is gone; wait for what DEL removes.
	nodetest.WaitFor(ctx, t, "CNI DEL", func() error {
		if _, err := os.Stat(store); err == nil {
			return fmt.Errorf("%s still reserved", podIP)
		}
		if ports := bridgePorts(t, ns); len(ports) != 0 {
			return fmt.Errorf("bridge ports left: %v", ports)
		}
		return nil
	})

	stopped = true
	nodetest.Must(t, node.Stop())
	checkNothingLeft(t, node, cfg, mntns, tunables, before)
}

// checkNothingLeft: no process, cgroup or mount of the node, and the host's
// kernel tunables as they were before it.
func checkNothingLeft(t *testing.T, node *realnode.Node, cfg realnode.Config, mntns uint64, tunables []string, before string) {
	t.Helper()
	// (A zombie holds nothing: in the runner-died case this test process is
	// still the parent of the kubelet and containerd it started, and reaps
	// them a moment later.)
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/mnt")
	for _, p := range procs {
		pid, _ := strconv.Atoi(strings.Split(p, "/")[2])
		if fi, err := os.Stat(p); err == nil && fi.Sys().(*syscall.Stat_t).Ino == mntns && netns.Alive(pid) {
			t.Errorf("process %d left in the node's mount namespace", pid)
		}
	}
	// Every hierarchy, v1 and the unified one of a hybrid host, read here
	// rather than through the runner.
	if cg, _ := filepath.Glob("/sys/fs/cgroup/*" + cfg.CgroupRoot()); len(cg) != 0 {
		t.Errorf("cgroups left after Stop: %v", cg)
	}
	if after := readSysctls(t, tunables); after != before {
		t.Errorf("host kernel tunables after Stop:\n%s\nbefore the node:\n%s", after, before)
	}
	mounts, err := node.Mounts()
	nodetest.Must(t, err)
	if len(mounts) != 0 {
		t.Errorf("mounts left after Stop: %v", mounts)
	}
}

// sweepDead cleans the nodes that test processes which died left in their
// temporary folders: netnstest removes their network namespaces (and the
// kubelet and containerd in them), not the pods, cgroups and mounts.
func sweepDead(t *testing.T) {
	t.Helper()
	var found []string
	for _, test := range []string{"TestPodThroughBerthCNI", "TestCleanAfterRunnerDied"} {
		m, _ := filepath.Glob(filepath.Join(os.TempDir(), test+"*", "*", "node", "node.json"))
		found = append(found, m...)
	}
	for _, f := range found {
		cfg, err := realnode.Load(filepath.Dir(f))
		var pid, seq int
		if err != nil {
			t.Logf("sweep: %v", err)
			continue
		}
		if _, err := fmt.Sscanf(cfg.Name, "rn-bt%d-%d", &pid, &seq); err != nil || pid == os.Getpid() || netns.Alive(pid) {
			continue
		}
		if err := cfg.Clean(); err != nil {
			t.Errorf("sweep the node test process %d left in %s: %v", pid, cfg.Dir, err)
			continue
		}
		// <tmp>/TestX123/001/node: the test's whole temporary folder.
		_ = os.RemoveAll(filepath.Dir(filepath.Dir(cfg.Dir)))
		t.Logf("swept the node test process %d left in %s", pid, cfg.Dir)
	}
}

func bridgePorts(t *testing.T, ns *netns.Namespace) []string {
	t.Helper()
	br, err := ns.Link(cni.DefaultBridge)
	if err != nil {
		t.Fatal(err)
	}
	links, err := ns.Netlink().LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func readSysctls(t *testing.T, keys []string) string {
	t.Helper()
	var out []string
	for _, k := range keys {
		b, err := os.ReadFile("/proc/sys/" + k)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, k+"="+strings.TrimSpace(string(b)))
	}
	return strings.Join(out, "\n")
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
