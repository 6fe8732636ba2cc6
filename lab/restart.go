package lab

import (
	"context"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/berthnet/berth/lab/netns"
)

// RestartAgent stops node i's berth-agent and starts it again with the same
// arguments, as a rolling update of the agent's DaemonSet would, and returns
// once the new agent is ready. What the agent put in the kernel (bridge,
// routes, the berth-proxy table) stays in place meanwhile.
// downFor keeps it stopped that long first, to show that the node keeps
// working without its agent. kill stops it with SIGKILL, as a crash would,
// rather than SIGTERM.
func RestartAgent(ctx context.Context, stateDir string, i int, downFor time.Duration, kill bool, out io.Writer) error {
	if err := RequireRoot("restart-agent"); err != nil {
		return err
	}
	st, err := LoadState(stateDir)
	if err != nil {
		return err
	}
	cfg := st.Config
	if i < 1 || i > cfg.Nodes {
		return fmt.Errorf("lab %q has nodes 1 to %d, not %d", cfg.Name, cfg.Nodes, i)
	}
	if cfg.Kubelet {
		return restartAgentPod(ctx, cfg, i, downFor, kill, out)
	}
	spec := cfg.agentSpec(i)
	at := -1
	for j, p := range st.Processes {
		if p.Name == spec.name {
			at = j
		}
	}
	if at < 0 {
		return fmt.Errorf("lab %q has no %s", cfg.Name, spec.name)
	}
	old := st.Processes[at]
	if ours(old.Pid, stateDir) {
		if kill {
			_ = syscall.Kill(old.Pid, syscall.SIGKILL)
		}
		if err := netns.Terminate([]int{old.Pid}, 10*time.Second); err != nil {
			return fmt.Errorf("stop %s: %w", old.Name, err)
		}
		fmt.Fprintf(out, "stopped %s (pid %d)\n", old.Name, old.Pid)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(downFor):
	}
	p, err := cfg.startProcess(spec)
	if err != nil {
		return err
	}
	st.Processes[at] = p
	if err := st.save(); err != nil {
		return err
	}
	if err := waitFor(ctx, p, time.Minute, cfg.agentReady(i)); err != nil {
		return err
	}
	fmt.Fprintf(out, "started %s (pid %d); ready\n", p.Name, p.Pid)
	return nil
}
