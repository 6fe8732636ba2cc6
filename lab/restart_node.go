package lab

import (
	"context"
	"fmt"
	"io"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthnet/berth/lab/netns"
)

// RestartNode stands in for a reboot of real node i: its kubelet, its pods
// and containerd stop (`lab real-node` ends them all on SIGTERM, and the
// node's mount namespace goes with them), then they start again from the
// node's folder, as a machine comes back with its disks. It returns once the
// Node is Ready again and its agent is ready; the kubelet then starts the
// node's pods again, each through berth-cni.
func RestartNode(ctx context.Context, stateDir string, i int, self string, out io.Writer) error {
	st, err := loadForNode("restart-node", stateDir, i)
	if err != nil {
		return err
	}
	cfg := st.Config
	name := "node-" + cfg.NodeName(i)
	at := -1
	for j, p := range st.Processes {
		if p.Name == name {
			at = j
		}
	}
	if at < 0 {
		return fmt.Errorf("lab %q has no %s", cfg.Name, name)
	}
	old := st.Processes[at]
	if ours(old.Pid, stateDir) {
		if err := netns.Terminate([]int{old.Pid}, time.Minute); err != nil {
			return fmt.Errorf("stop %s: %w", name, err)
		}
	}
	// What a runner that was killed left (none after a clean stop).
	if err := cfg.realNode(i, "").Clean(); err != nil {
		return err
	}
	fmt.Fprintf(out, "stopped %s: kubelet, pods, containerd (pid %d)\n", cfg.NodeName(i), old.Pid)
	p, err := cfg.startProcess(cfg.realNodeSpec(i, self))
	if err != nil {
		return err
	}
	st.Processes[at] = p
	if err := st.save(); err != nil {
		return err
	}
	client, err := AdminClient(cfg)
	if err != nil {
		return err
	}
	node := cfg.NodeName(i)
	started := time.Now()
	if err := waitFor(ctx, p, 3*time.Minute, func(ctx context.Context) error {
		n, err := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == "Ready" && c.Status == "True" && c.LastHeartbeatTime.After(started) {
				return nil
			}
		}
		return fmt.Errorf("node %s not Ready since the restart", node)
	}); err != nil {
		return err
	}
	if err := waitFor(ctx, p, 2*time.Minute, cfg.agentReady(i)); err != nil {
		return err
	}
	fmt.Fprintf(out, "started %s again (pid %d): Ready, its agent ready\n", node, p.Pid)
	return nil
}
