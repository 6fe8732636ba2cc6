package lab

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

// A lab node has no kubelet. In its place, a node host process runs inside
// the node's namespace with the node's own credentials (system:node:<name>,
// held to its own objects by the Node authorizer and NodeRestriction): it
// registers the Node with its InternalIPs (IPv4, then IPv6) and keeps it Ready with lease and
// status heartbeats, as a kubelet does. When it stops, the node goes NotReady
// after the controller manager's grace period, as a failed machine would.

const (
	leaseDuration     = 40 * time.Second
	leaseRenewEvery   = 10 * time.Second
	statusReportEvery = time.Minute
	// LabLabel marks the Nodes of a lab with the lab's name.
	LabLabel = "berth.dev/lab"
)

// NodeHost keeps one lab node registered and Ready.
type NodeHost struct {
	cfg    Config
	index  int
	client kubernetes.Interface
	log    *slog.Logger
}

// NewNodeHost builds the node host for node index (1-based) from the lab's
// state folder.
func NewNodeHost(cfg Config, index int, log *slog.Logger) (*NodeHost, error) {
	if index < 1 || index > cfg.Nodes {
		return nil, fmt.Errorf("node %d: the lab has nodes 1 to %d", index, cfg.Nodes)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.kubeconfig(cfg.NodeName(index)))
	if err != nil {
		return nil, err
	}
	rc.UserAgent = "berth-lab-node/" + cfg.NodeName(index)
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &NodeHost{cfg: cfg, index: index, client: client, log: log.With("node", cfg.NodeName(index))}, nil
}

// Run registers the node and sends heartbeats until ctx ends. API errors are
// retried; they never end the loop.
func (h *NodeHost) Run(ctx context.Context) error {
	name := h.cfg.NodeName(h.index)
	lastStatus := time.Time{}
	ticker := time.NewTicker(leaseRenewEvery)
	defer ticker.Stop()
	for {
		if time.Since(lastStatus) >= statusReportEvery {
			if err := h.syncNode(ctx); err != nil {
				h.log.Error("node status", "err", err)
			} else {
				lastStatus = time.Now()
			}
		}
		if err := h.renewLease(ctx); err != nil {
			h.log.Error("node lease", "err", err)
		}
		select {
		case <-ctx.Done():
			h.log.Info("node host stopping", "name", name)
			return nil
		case <-ticker.C:
		}
	}
}

func (h *NodeHost) desiredNode() *corev1.Node {
	name := h.cfg.NodeName(h.index)
	now := metav1.Now()
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("2"),
		corev1.ResourceMemory: resource.MustParse("4Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				corev1.LabelHostname:   name,
				corev1.LabelOSStable:   runtime.GOOS,
				corev1.LabelArchStable: runtime.GOARCH,
				LabLabel:               h.cfg.Name,
			},
		},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity,
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: h.cfg.NodeAddr(h.index).String()},
				{Type: corev1.NodeInternalIP, Address: h.cfg.NodeAddr6(h.index).String()},
				{Type: corev1.NodeHostName, Address: name},
			},
			Conditions: []corev1.NodeCondition{
				cond(corev1.NodeReady, corev1.ConditionTrue, "BerthLabNodeReady", "berth lab node host is running"),
				cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "BerthLabNodeReady", ""),
				cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "BerthLabNodeReady", ""),
				cond(corev1.NodePIDPressure, corev1.ConditionFalse, "BerthLabNodeReady", ""),
			},
			NodeInfo: corev1.NodeSystemInfo{
				OperatingSystem:         runtime.GOOS,
				Architecture:            runtime.GOARCH,
				OSImage:                 "berth lab (network namespace " + h.cfg.NodeNamespace(h.index) + ")",
				ContainerRuntimeVersion: "berth-lab://processes",
				KubeletVersion:          h.kubeletVersion(),
				KernelVersion:           kernelRelease(),
			},
		},
	}
}

// kubeletVersion reports the API server's version, as a kubelet of the same
// release would.
func (h *NodeHost) kubeletVersion() string {
	v, err := h.client.Discovery().ServerVersion()
	if err != nil {
		return "v0.0.0"
	}
	return v.GitVersion
}

// syncNode creates the Node, or refreshes its addresses and conditions.
func (h *NodeHost) syncNode(ctx context.Context) error {
	want := h.desiredNode()
	nodes := h.client.CoreV1().Nodes()
	cur, err := nodes.Get(ctx, want.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		created, err := nodes.Create(ctx, want, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("register node: %w", err)
		}
		created.Status = want.Status
		_, err = nodes.UpdateStatus(ctx, created, metav1.UpdateOptions{})
		if err == nil {
			h.log.Info("node registered", "internalIPs", []string{h.cfg.NodeAddr(h.index).String(), h.cfg.NodeAddr6(h.index).String()})
		}
		return err
	}
	if err != nil {
		return err
	}
	// Keep the transition time of conditions whose status did not change.
	for i, wc := range want.Status.Conditions {
		for _, cc := range cur.Status.Conditions {
			if cc.Type == wc.Type && cc.Status == wc.Status {
				want.Status.Conditions[i].LastTransitionTime = cc.LastTransitionTime
			}
		}
	}
	cur.Status.Capacity = want.Status.Capacity
	cur.Status.Allocatable = want.Status.Allocatable
	cur.Status.Addresses = want.Status.Addresses
	cur.Status.Conditions = want.Status.Conditions
	cur.Status.NodeInfo = want.Status.NodeInfo
	_, err = nodes.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	return err
}

// renewLease creates or renews the node's Lease in kube-node-lease, which is
// how the node lifecycle controller knows the node is alive.
func (h *NodeHost) renewLease(ctx context.Context) error {
	name := h.cfg.NodeName(h.index)
	leases := h.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	cur, err := leases.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		node, err := h.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("lease needs the node first: %w", err)
		}
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{
				Name:      name,
				Namespace: corev1.NamespaceNodeLease,
				OwnerReferences: []metav1.OwnerReference{{
					APIVersion: "v1", Kind: "Node", Name: name, UID: node.UID,
				}},
			},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To(name),
				LeaseDurationSeconds: ptr.To(int32(leaseDuration / time.Second)),
				RenewTime:            &now,
			},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	cur.Spec.HolderIdentity = ptr.To(name)
	cur.Spec.LeaseDurationSeconds = ptr.To(int32(leaseDuration / time.Second))
	cur.Spec.RenewTime = &now
	_, err = leases.Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

// kernelRelease is the running kernel's release, as `uname -r` prints it.
func kernelRelease() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return ""
	}
	b := make([]byte, 0, len(u.Release))
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}
