package lab

import (
	"context"
	"fmt"
	"io"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// osLabel is the node label the chart's agent DaemonSet selects nodes by
// (nodeSelector kubernetes.io/os: linux), which the kubelet sets when it
// registers its node.
const osLabel = "kubernetes.io/os"

// agentAway keeps a real node without its agent for downFor, as the
// cluster itself would: the node's kubernetes.io/os label is removed, the
// DaemonSet controller deletes the agent pod there (the agent gets SIGTERM
// and shuts down gracefully) and starts none while the node does not match;
// once old is gone and downFor has passed, the label is put back (also when
// ctx ends early) and the DaemonSet starts a new agent.
//
// With kill the agent dies as in a crash, and stays away: it is stopped
// (SIGSTOP) before the label goes, so the SIGTERM of the pod's deletion
// waits unhandled, and killed (SIGKILL) once the pod is terminating, when
// the kubelet no longer restarts its containers. signal sends a signal to
// the agent's processes.
func agentAway(ctx context.Context, client kubernetes.Interface, node string, old *corev1.Pod, downFor time.Duration, kill bool, signal func(syscall.Signal) error, out io.Writer) error {
	n, err := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return err
	}
	value, ok := n.Labels[osLabel]
	if !ok {
		return fmt.Errorf("node %s has no %s label: the agent DaemonSet does not select it", node, osLabel)
	}
	killed := !kill
	if kill {
		if err := signal(syscall.SIGSTOP); err != nil {
			return err
		}
		defer func() {
			if !killed { // failed half-way: the agent goes on
				_ = signal(syscall.SIGCONT)
			}
		}()
	}
	if err := patchLabel(ctx, client, node, nil); err != nil {
		return fmt.Errorf("take %s out of the agent DaemonSet: %w", node, err)
	}
	defer func() {
		// The label goes back even when ctx has ended: a node left
		// without its agent is worse than a late restart.
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := patchLabel(bctx, client, node, &value); err != nil {
			fmt.Fprintf(out, "put the label %s=%s back on %s: %v (do it by hand: kubectl label node %s %s=%s)\n", osLabel, value, node, err, node, osLabel, value)
		}
	}()
	fmt.Fprintf(out, "removed the label %s from %s: the DaemonSet controller stops its agent\n", osLabel, node)
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		p, err := client.CoreV1().Pods(old.Namespace).Get(wctx, old.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if !killed && err == nil && p.DeletionTimestamp != nil {
			if err := signal(syscall.SIGKILL); err != nil {
				return err
			}
			killed = true
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("agent pod %s/%s on %s still there 2m after its node left the DaemonSet's selector", old.Namespace, old.Name, node)
		case <-time.After(200 * time.Millisecond):
		}
	}
	fmt.Fprintf(out, "agent pod %s on %s gone; back in %s\n", old.Name, node, downFor)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(downFor):
	}
	if err := patchLabel(ctx, client, node, &value); err != nil {
		return err
	}
	fmt.Fprintf(out, "put the label %s=%s back on %s\n", osLabel, value, node)
	return nil
}

// patchLabel sets the node's osLabel to value, or removes it if value is nil.
func patchLabel(ctx context.Context, client kubernetes.Interface, node string, value *string) error {
	v := "null"
	if value != nil {
		v = fmt.Sprintf("%q", *value)
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%s}}}`, osLabel, v)
	_, err := client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}
