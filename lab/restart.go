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
	st, err := loadForNode("restart-agent", stateDir, i)
	if err != nil {
		return err
	}
	return restartAgentPod(ctx, st.Config, i, downFor, kill, out)
}

// loadForNode is the start of a command on one node of a lab (as root): the
// lab's state, once node i is known to be one of its nodes.
func loadForNode(command, stateDir string, i int) (*State, error) {
	if err := RequireRoot(command); err != nil {
		return nil, err
	}
	st, err := LoadState(stateDir)
	if err != nil {
		return nil, err
	}
	if i < 1 || i > st.Config.Nodes {
		return nil, fmt.Errorf("lab %q has nodes 1 to %d, not %d", st.Config.Name, st.Config.Nodes, i)
	}
	return st, nil
}
