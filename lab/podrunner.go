package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/berthnet/berth/cni"
	"github.com/berthnet/berth/lab/netns"
)

// A lab node has no kubelet or container runtime. The pod runner stands in
// for both, inside the node's namespace: for each pod bound to the node it
// makes a network namespace, calls berth-cni through libcni with the
// conflist berth-agent installed (as a runtime does), starts the pod's
// built-in program in it, and keeps the Pod's status true (phase, pod IPs,
// readiness from a TCP check), so the real controllers build EndpointSlices
// from it. Deleting a pod stops the program, calls DEL and removes the
// namespace.

// PodRunner runs the pods of one lab node.
type PodRunner struct {
	cfg     Config
	index   int
	node    string
	self    string
	client  kubernetes.Interface
	log     *slog.Logger
	cninet  *libcni.CNIConfig
	running map[types.UID]*runningPod
	trigger chan struct{}
}

type runningPod struct {
	uid      types.UID
	netns    string
	rt       *libcni.RuntimeConf
	list     *libcni.NetworkConfigList
	ips      []string
	port     int
	cmd      *exec.Cmd
	exited   chan struct{}
	started  metav1.Time
	ready    bool
	restarts int32
}

// NewPodRunner builds the pod runner of node index (1-based).
func NewPodRunner(cfg Config, index int, self string, log *slog.Logger) (*PodRunner, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.kubeconfig(cfg.NodeName(index)))
	if err != nil {
		return nil, err
	}
	rc.UserAgent = "berth-lab-pod-runner/" + cfg.NodeName(index)
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &PodRunner{
		cfg: cfg, index: index, node: cfg.NodeName(index), self: self, client: client,
		log: log.With("node", cfg.NodeName(index)),
		// Each node keeps its own libcni cache (a runtime's /var/lib/cni):
		// with a shared one, one node's GC would DEL another node's pods.
		cninet:  libcni.NewCNIConfigWithCacheDir([]string{cfg.NodeCNIBinDir(index)}, cfg.NodeCNICacheDir(index), nil),
		running: map[types.UID]*runningPod{},
		trigger: make(chan struct{}, 1),
	}, nil
}

// Run keeps the node's pods running until ctx ends, then stops them all.
func (r *PodRunner) Run(ctx context.Context) error {
	factory := informers.NewSharedInformerFactoryWithOptions(r.client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", r.node).String()
	}))
	pods := factory.Core().V1().Pods()
	poke := func(any) {
		select {
		case r.trigger <- struct{}{}:
		default:
		}
	}
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: poke, DeleteFunc: poke, UpdateFunc: func(_, n any) { poke(n) }}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), pods.Informer().HasSynced) {
		return ctx.Err()
	}
	r.cleanStale(ctx)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		list, err := pods.Lister().List(labels.Everything())
		if err != nil {
			r.log.Error("list pods", "err", err)
		}
		r.sync(ctx, list)
		select {
		case <-ctx.Done():
			for uid := range r.running {
				r.stop(context.Background(), uid)
			}
			return nil
		case <-r.trigger:
		case <-tick.C:
		}
	}
}

// cleanStale removes pod namespaces and addresses left by an earlier runner
// of this node: GC through the plugin with no valid attachment frees every
// address the store holds.
func (r *PodRunner) cleanStale(ctx context.Context) {
	names, _ := netns.List(r.podNetnsPrefix())
	for _, n := range names {
		if err := netns.Remove(n); err != nil {
			r.log.Error("remove stale pod namespace", "netns", n, "err", err)
		}
	}
	if list, err := r.conflist(); err == nil {
		if err := r.cninet.GCNetworkList(ctx, list, &libcni.GCArgs{}); err != nil {
			r.log.Error("CNI GC", "err", err)
		}
	}
}

func (r *PodRunner) podNetnsPrefix() string { return r.cfg.Prefix() + r.node + "-" }

func (r *PodRunner) conflist() (*libcni.NetworkConfigList, error) {
	return libcni.ConfListFromFile(filepath.Join(r.cfg.NodeCNIConfDir(r.index), cni.ConflistName))
}

func (r *PodRunner) sync(ctx context.Context, pods []*corev1.Pod) {
	seen := map[types.UID]bool{}
	for _, pod := range pods {
		seen[pod.UID] = true
		if pod.DeletionTimestamp != nil {
			r.stop(ctx, pod.UID)
			err := r.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
				GracePeriodSeconds: ptr.To(int64(0)),
				Preconditions:      &metav1.Preconditions{UID: &pod.UID},
			})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				r.log.Error("finish pod deletion", "pod", pod.Namespace+"/"+pod.Name, "err", err)
			}
			continue
		}
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		rp, ok := r.running[pod.UID]
		var waiting *corev1.ContainerStateWaiting
		if !ok {
			var err error
			rp, err = r.start(ctx, pod)
			if err != nil {
				waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating", Message: err.Error()}
				if errors.Is(err, errUnknownImage) {
					waiting.Reason = "ErrImagePull"
				}
				r.log.Info("pod not started", "pod", pod.Namespace+"/"+pod.Name, "reason", err.Error())
			}
		}
		if rp != nil {
			r.checkProcess(ctx, pod, rp)
		}
		r.writeStatus(ctx, pod, rp, waiting)
	}
	for uid := range r.running {
		if !seen[uid] {
			r.stop(ctx, uid)
		}
	}
}

var errUnknownImage = errors.New("unknown lab image")

func (r *PodRunner) start(ctx context.Context, pod *corev1.Pod) (*runningPod, error) {
	c := pod.Spec.Containers[0]
	if !KnownImage(c.Image) {
		return nil, fmt.Errorf("%w: image %q is not one of the lab's built-in programs (berth.dev/lab/http-echo, tcp-echo, udp-echo)", errUnknownImage, c.Image)
	}
	list, err := r.conflist()
	if err != nil {
		return nil, fmt.Errorf("pod network not ready on %s: no CNI config yet (%v)", r.node, err)
	}
	nsName := r.podNetnsPrefix() + string(pod.UID)[:8]
	ns, err := netns.Create(nsName)
	if err != nil {
		return nil, err
	}
	ns.Close()
	rt := &libcni.RuntimeConf{
		ContainerID: string(pod.UID),
		NetNS:       filepath.Join(netns.Dir, nsName),
		IfName:      "eth0",
		Args:        [][2]string{{"K8S_POD_NAMESPACE", pod.Namespace}, {"K8S_POD_NAME", pod.Name}, {"K8S_POD_UID", string(pod.UID)}},
	}
	res, err := r.cninet.AddNetworkList(ctx, list, rt)
	if err != nil {
		_ = netns.Remove(nsName)
		return nil, fmt.Errorf("CNI ADD: %w", err)
	}
	cur, err := current.NewResultFromResult(res)
	if err != nil {
		_ = r.cninet.DelNetworkList(ctx, list, rt)
		_ = netns.Remove(nsName)
		return nil, err
	}
	rp := &runningPod{uid: pod.UID, netns: nsName, rt: rt, list: list, port: 8080, started: metav1.Now()}
	for _, ip := range cur.IPs {
		rp.ips = append(rp.ips, ip.Address.IP.String())
	}
	if len(c.Ports) > 0 {
		rp.port = int(c.Ports[0].ContainerPort)
	}
	if err := r.launch(pod, rp); err != nil {
		_ = r.cninet.DelNetworkList(ctx, list, rt)
		_ = netns.Remove(nsName)
		return nil, err
	}
	r.running[pod.UID] = rp
	r.log.Info("pod started", "pod", pod.Namespace+"/"+pod.Name, "ips", rp.ips, "netns", nsName)
	return rp, nil
}

// launch starts the pod's program in its namespace.
func (r *PodRunner) launch(pod *corev1.Pod, rp *runningPod) error {
	c := pod.Spec.Containers[0]
	logDir := filepath.Join(r.cfg.logDir(), "pods")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(logDir, pod.Namespace+"_"+pod.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := netns.EnterCommand(filepath.Join(netns.Dir, rp.netns), r.self, "lab", "pod-program",
		"--image", c.Image, "--port", strconv.Itoa(rp.port), "--state-dir", r.cfg.StateDir+"/")
	cmd.Env = []string{"POD_NAME=" + pod.Name, "POD_NAMESPACE=" + pod.Namespace, "POD_IP=" + rp.ips[0], "POD_IPS=" + strings.Join(rp.ips, ","), "NODE_NAME=" + r.node, "PATH=" + os.Getenv("PATH")}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
		}
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	rp.cmd = cmd
	rp.exited = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(rp.exited)
	}()
	return nil
}

// checkProcess restarts an exited program and probes readiness: a TCP
// connection to the pod's first port (UDP programs count once started).
func (r *PodRunner) checkProcess(ctx context.Context, pod *corev1.Pod, rp *runningPod) {
	select {
	case <-rp.exited:
		rp.ready = false
		rp.restarts++
		if err := r.launch(pod, rp); err != nil {
			r.log.Error("restart pod program", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		}
		return
	default:
	}
	if rp.ready {
		return
	}
	if strings.Contains(pod.Spec.Containers[0].Image, "udp-echo") {
		rp.ready = true
		return
	}
	d := net.Dialer{Timeout: 500 * time.Millisecond}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(rp.ips[0], strconv.Itoa(rp.port)))
	if err == nil {
		conn.Close()
		rp.ready = true
	}
}

func (r *PodRunner) stop(ctx context.Context, uid types.UID) {
	rp, ok := r.running[uid]
	if !ok {
		return
	}
	delete(r.running, uid)
	if rp.cmd != nil && rp.cmd.Process != nil {
		_ = rp.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-rp.exited:
		case <-time.After(5 * time.Second):
			_ = rp.cmd.Process.Kill()
			<-rp.exited
		}
	}
	if err := r.cninet.DelNetworkList(ctx, rp.list, rp.rt); err != nil {
		r.log.Error("CNI DEL", "netns", rp.netns, "err", err)
	}
	if err := netns.Remove(rp.netns); err != nil {
		r.log.Error("remove pod namespace", "netns", rp.netns, "err", err)
	}
	r.log.Info("pod stopped", "uid", uid)
}

// writeStatus reports the pod as the kubelet would.
func (r *PodRunner) writeStatus(ctx context.Context, pod *corev1.Pod, rp *runningPod, waiting *corev1.ContainerStateWaiting) {
	st := pod.Status.DeepCopy()
	hostIP := r.cfg.NodeAddr(r.index).String()
	st.HostIP, st.HostIPs = hostIP, []corev1.HostIP{{IP: hostIP}, {IP: r.cfg.NodeAddr6(r.index).String()}}
	c := pod.Spec.Containers[0]
	cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.Image}
	ready := false
	if rp != nil {
		st.Phase = corev1.PodRunning
		st.StartTime = &rp.started
		st.PodIP = rp.ips[0]
		st.PodIPs = nil
		for _, ip := range rp.ips {
			st.PodIPs = append(st.PodIPs, corev1.PodIP{IP: ip})
		}
		ready = rp.ready
		cs.Ready, cs.Started, cs.RestartCount = ready, ptr.To(true), rp.restarts
		cs.ContainerID = "berth-lab://" + rp.netns
		cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: rp.started}}
	} else {
		st.Phase = corev1.PodPending
		cs.State = corev1.ContainerState{Waiting: waiting}
	}
	st.ContainerStatuses = []corev1.ContainerStatus{cs}
	setCond := func(t corev1.PodConditionType, ok bool) {
		status := corev1.ConditionFalse
		if ok {
			status = corev1.ConditionTrue
		}
		for i := range st.Conditions {
			if st.Conditions[i].Type == t {
				if st.Conditions[i].Status != status {
					st.Conditions[i].Status = status
					st.Conditions[i].LastTransitionTime = metav1.Now()
				}
				return
			}
		}
		st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: status, LastTransitionTime: metav1.Now()})
	}
	setCond(corev1.PodReadyToStartContainers, rp != nil)
	setCond(corev1.PodInitialized, true)
	setCond(corev1.ContainersReady, ready)
	setCond(corev1.PodReady, ready)
	if equality.Semantic.DeepEqual(&pod.Status, st) {
		return
	}
	next := pod.DeepCopy()
	next.Status = *st
	if _, err := r.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, next, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
		r.log.Error("pod status", "pod", pod.Namespace+"/"+pod.Name, "err", err)
	}
}
