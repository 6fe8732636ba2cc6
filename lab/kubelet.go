package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/lab/realnode"
)

// LabLabel marks the Nodes of a lab with the lab's name.
const LabLabel = "berth.dev/lab"

// Each lab node is a real one: `berthctl lab real-node`
// runs in the node's network namespace and keeps containerd and the kubelet
// (lab/realnode) running there, in a mount namespace of the node's own, with
// every image of ImagesDir imported. The kubelet registers the Node with both
// InternalIPs and the lab label, authenticates as system:node:<name> with the
// node's certificate, and serves logs/exec on the node's IPv4 address to the
// API server's kubelet client certificate.

// The API server's identity towards the kubelets.
const (
	kubeletClientCert = "apiserver-kubelet-client"
	kubeletClientUser = "berth-lab-apiserver-kubelet-client"
)

// kubeletClientBinding lets the API server call the kubelets' API.
const kubeletClientBinding = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: berth-lab-apiserver-kubelet-client}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:kubelet-api-admin"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: ` + kubeletClientUser + `}]
`

// ClusterDNS is the cluster DNS Service's IPv4 address: the tenth of the
// Service range, as kubeadm picks it. ClusterDNS6 is its IPv6 one.
func (c Config) ClusterDNS() netip.Addr  { return nthService(c.ServiceCIDR, 10) }
func (c Config) ClusterDNS6() netip.Addr { return nthService(c.ServiceCIDR6, 10) }

func nthService(p netip.Prefix, n int) netip.Addr {
	a := p.Masked().Addr()
	for range n {
		a = a.Next()
	}
	return a
}

// RealNodeDir is node i's folder for containerd and the kubelet: its state,
// its private paths (/etc/cni/net.d, /var/lib/kubelet, ...), configs and logs.
func (c Config) RealNodeDir(i int) string { return filepath.Join(c.NodeDir(i), "real") }

// realNode is node i's realnode configuration.
func (c Config) realNode(i int, sandbox string) realnode.Config {
	return realnode.Config{
		Name:         c.NodeName(i),
		Netns:        c.NodeNamespace(i),
		Address:      c.NodeAddr(i),
		Address6:     c.NodeAddr6(i),
		Labels:       map[string]string{LabLabel: c.Name},
		ClusterDNS:   []netip.Addr{c.ClusterDNS(), c.ClusterDNS6()},
		Dir:          c.RealNodeDir(i),
		BinDir:       c.NodeBinDir,
		Kubeconfig:   c.kubeconfig(c.NodeName(i)),
		ClientCAFile: c.pki("ca.crt"),
		SandboxImage: sandbox,
	}
}

// checkRealNodes says what to build when a real node's inputs are missing.
func (c Config) checkRealNodes() (Images, error) {
	for _, b := range []string{"kubelet", "containerd", "containerd-shim-runc-v2", "ctr", "runc"} {
		if _, err := os.Stat(filepath.Join(c.NodeBinDir, b)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run `make test-deps` to build the node binaries, or pass --node-bin-dir", b, c.NodeBinDir)
		}
	}
	if _, err := os.Stat(c.Helm); err != nil {
		return nil, fmt.Errorf("helm not found at %s: run `make test-deps`, or pass --helm", c.Helm)
	}
	if _, err := os.Stat(filepath.Join(c.ChartDir, "Chart.yaml")); err != nil {
		return nil, fmt.Errorf("no chart in %s: pass --chart (charts/berth of the repository)", c.ChartDir)
	}
	images, err := FindImages(c.ImagesDir)
	if err != nil {
		return nil, err
	}
	for _, n := range []string{"pause", "berth-controller", "berth-agent", "coredns", "toolbox", "http-echo"} {
		if _, err := images.Named(n); err != nil {
			return nil, err
		}
	}
	return images, nil
}

// RunRealNode runs node i until ctx ends, then stops it: containerd, the
// images imported, the kubelet. It is what `berthctl lab real-node` runs.
func RunRealNode(cfg Config, i int, log *slog.Logger) (func(context.Context) error, error) {
	if i < 1 || i > cfg.Nodes {
		return nil, fmt.Errorf("node %d: the lab has nodes 1 to %d", i, cfg.Nodes)
	}
	images, err := FindImages(cfg.ImagesDir)
	if err != nil {
		return nil, err
	}
	pause, err := images.Named("pause")
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		node, err := realnode.Start(ctx, cfg.realNode(i, pause.Ref))
		if err != nil {
			return err
		}
		log.Info("containerd is up", "node", node.Name)
		for _, im := range images {
			if err := node.ImportImage(ctx, im.Path); err != nil {
				return errors.Join(err, node.Stop())
			}
			log.Info("imported", "image", im.Ref)
		}
		if err := node.StartKubelet(ctx); err != nil {
			return errors.Join(err, node.Stop())
		}
		log.Info("kubelet is up", "node", node.Name)
		<-ctx.Done()
		log.Info("stopping the node", "node", node.Name)
		return node.Stop()
	}, nil
}

// cleanRealNodes ends what real nodes whose runner died left: processes,
// mounts, cgroups (realnode.Clean). It names the nodes it cleaned.
func (c Config) cleanRealNodes() ([]string, error) {
	dirs, _ := filepath.Glob(filepath.Join(c.StateDir, "nodes", "*", "real"))
	var cleaned []string
	var errs []error
	for _, d := range dirs {
		rc, err := realnode.Load(d)
		if err != nil {
			continue // never started: nothing to end
		}
		if err := rc.Clean(); err != nil {
			errs = append(errs, err)
			continue
		}
		cleaned = append(cleaned, "node "+rc.Name+" (containerd, kubelet, pods, mounts, cgroups)")
	}
	return cleaned, errors.Join(errs...)
}

// realNodeSpec is the process that runs node i: `berthctl lab real-node`.
func (c Config) realNodeSpec(i int, self string) procSpec {
	return procSpec{name: "node-" + c.NodeName(i), netns: c.NodeNamespace(i), path: self,
		args: []string{"lab", "real-node", "--state-dir", c.StateDir + "/", "--node", fmt.Sprint(i)}}
}

// upRealNodes starts a real node in every node namespace, installs Berth
// with its chart and CoreDNS, and waits until every node is Ready with a
// podCIDR, the agents and the controller are ready, and DNS answers.
func (st *State) upRealNodes(ctx context.Context, self string, images Images, out io.Writer) error {
	cfg := st.Config
	client, err := AdminClient(cfg)
	if err != nil {
		return err
	}
	if err := cfg.kubectl(ctx, []byte(kubeletClientBinding), "apply", "--server-side", "--field-manager=berth-lab", "-f", "-"); err != nil {
		return err
	}
	step(out, "nodes: containerd and the kubelet (%s) on each of %d, with %d images imported", filepath.Join(cfg.NodeBinDir, "kubelet"), cfg.Nodes, len(images))
	for i := 1; i <= cfg.Nodes; i++ {
		p, err := st.start(cfg.realNodeSpec(i, self))
		if err != nil {
			return err
		}
		name := cfg.NodeName(i)
		if err := waitFor(ctx, p, 3*time.Minute, func(ctx context.Context) error {
			_, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			return err
		}); err != nil {
			return fmt.Errorf("%w\nkubelet log: %s", err, filepath.Join(cfg.RealNodeDir(i), "kubelet.log"))
		}
	}
	step(out, "Berth: helm install %s %s --namespace %s -f %s (%s pod network; pools %s on the LAN, %s over BGP)",
		ReleaseName, cfg.ChartDir, Namespace, cfg.ValuesFile(), cfg.PodNetworkMode, poolRange(cfg), BGPPool)
	if err := cfg.helmInstall(ctx, images, st.Ports.APIServer); err != nil {
		return err
	}
	if err := waitBerth(ctx, client, cfg, 4*time.Minute); err != nil {
		return err
	}
	if err := waitNodes(ctx, client, cfg, 2*time.Minute); err != nil {
		return err
	}
	coredns, err := images.Named("coredns")
	if err != nil {
		return err
	}
	step(out, "cluster DNS: CoreDNS (%s) behind kube-system/kube-dns at %s and %s", coredns.Ref, cfg.ClusterDNS(), cfg.ClusterDNS6())
	return cfg.installDNS(ctx, client, coredns.Ref)
}

// PodProcesses lists the processes of a pod on a real node of the lab
// (its sandbox's and its containers'), by the pod's cgroup.
func PodProcesses(cfg Config, pod corev1.Pod) ([]int, error) {
	for n := 1; n <= cfg.Nodes; n++ {
		if cfg.NodeName(n) == pod.Spec.NodeName {
			return cfg.realNode(n, "").PodPids(string(pod.UID)), nil
		}
	}
	return nil, fmt.Errorf("pod %s/%s: on %q, not a node of lab %s", pod.Namespace, pod.Name, pod.Spec.NodeName, cfg.Name)
}

// OpenPod opens a pod's network namespace: that of a process of the pod
// (the runtime keeps the namespace inside the node's mount namespace). A
// process of a pod that is starting can still be in the node's namespace
// (runc's init enters the pod's cgroup before the pod's namespace): unless
// the pod is on the host network, such a process is passed over.
func OpenPod(cfg Config, pod corev1.Pod) (*netns.Namespace, error) {
	pids, err := PodProcesses(cfg, pod)
	if err != nil {
		return nil, err
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("pod %s/%s: no process of it on %s (is it running?)", pod.Namespace, pod.Name, pod.Spec.NodeName)
	}
	node, err := os.Stat(filepath.Join(netns.Dir, cfg.Prefix()+pod.Spec.NodeName))
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s: its node's namespace: %w", pod.Namespace, pod.Name, err)
	}
	var errs []error
	for _, pid := range pids {
		path := fmt.Sprintf("/proc/%d/ns/net", pid)
		if fi, err := os.Stat(path); err == nil && os.SameFile(fi, node) && !pod.Spec.HostNetwork {
			errs = append(errs, fmt.Errorf("process %d is still in the node's network namespace", pid))
			continue
		}
		ns, err := netns.OpenPath(path)
		if err == nil {
			return ns, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("pod %s/%s: no process of it on %s to enter: %w", pod.Namespace, pod.Name, pod.Spec.NodeName, errors.Join(errs...))
}
