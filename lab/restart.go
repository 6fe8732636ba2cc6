package lab

import (
	"context"
	"fmt"
	"io"
	"time"
)

// RestartAgent stops node i's berth-agent and lets the cluster start it
// again (restartAgentPod), and returns once the new agent is ready. What the
// agent put in the kernel (bridge, routes, the berth-proxy table) stays in
// place meanwhile. downFor keeps it stopped that long first, to show that
// the node keeps working without its agent. kill stops it with SIGKILL, as a
// crash would, rather than SIGTERM.
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
	return restartAgentPod(ctx, cfg, i, downFor, kill, out)
}
