package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// restartAgentPod restarts node i's agent on a real node, as the cluster
// would: without kill, the pod is deleted (SIGTERM, as a rolling update does)
// and the DaemonSet makes a new one; with kill, the agent's process gets
// SIGKILL, as a crash, and the kubelet restarts the container. With
// downFor, the node leaves the DaemonSet's node selector for that long
// (agentAway), so the DaemonSet controller stops the agent (SIGTERM, or
// SIGKILL with kill) and starts none there until it is back. It returns
// once the agent is ready again.
func restartAgentPod(ctx context.Context, cfg Config, i int, downFor time.Duration, kill bool, out io.Writer) error {
	client, err := AdminClient(cfg)
	if err != nil {
		return err
	}
	node := cfg.NodeName(i)
	agentPod := func() (*corev1.Pod, error) {
		pods, err := client.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{
			LabelSelector: "app.kubernetes.io/component=agent", FieldSelector: "spec.nodeName=" + node})
		if err != nil {
			return nil, err
		}
		for i := range pods.Items {
			if pods.Items[i].DeletionTimestamp == nil {
				return &pods.Items[i], nil
			}
		}
		return nil, fmt.Errorf("no berth-agent pod on %s", node)
	}
	old, err := agentPod()
	if err != nil {
		return err
	}
	restarts := func(p *corev1.Pod) int32 {
		for _, c := range p.Status.ContainerStatuses {
			if c.Name == "agent" {
				return c.RestartCount
			}
		}
		return 0
	}
	before := restarts(old)
	signal := func(sig syscall.Signal) error {
		var sent []int
		for _, pid := range cfg.realNode(i, "").PodPids(string(old.UID)) {
			if comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); strings.TrimSpace(string(comm)) == "berth-agent" {
				if syscall.Kill(pid, sig) == nil {
					sent = append(sent, pid)
				}
			}
		}
		if len(sent) == 0 {
			return fmt.Errorf("pod %s/%s: no berth-agent process found on %s", Namespace, old.Name, node)
		}
		fmt.Fprintf(out, "sent %s to berth-agent of pod %s (pid %v)\n", sig, old.Name, sent)
		return nil
	}
	if downFor > 0 {
		if err := agentAway(ctx, client, node, old, downFor, kill, signal, out); err != nil {
			return err
		}
	} else if kill {
		if err := signal(syscall.SIGKILL); err != nil {
			return err
		}
	} else {
		if err := client.CoreV1().Pods(Namespace).Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil {
			return err
		}
		fmt.Fprintf(out, "deleted pod %s/%s\n", Namespace, old.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		p, err := agentPod()
		if err == nil && podReady(p) && (p.UID != old.UID || restarts(p) > before) {
			fmt.Fprintf(out, "agent pod %s on %s ready\n", p.Name, node)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the agent on %s is not ready again after 2m:%s", node, podsState(ctx, client, Namespace, "app.kubernetes.io/component=agent"))
		case <-time.After(250 * time.Millisecond):
		}
	}
}
