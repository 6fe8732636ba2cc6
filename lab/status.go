package lab

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthnet/berth/lab/netns"
)

// Status prints what runs in the lab and whether it is healthy. It returns an
// error when something is down, so scripts can test it.
func Status(ctx context.Context, stateDir string, out io.Writer) error {
	st, err := LoadState(stateDir)
	if err != nil {
		if err == ErrNotUp {
			return fmt.Errorf("no lab state in %s: the lab is not up (berthctl lab up)", stateDir)
		}
		return err
	}
	cfg := st.Config
	var problems []string
	checks, err := cfg.healthChecks(st.Ports)
	if err != nil {
		return err
	}
	_, birdc, berr := findBird()

	fmt.Fprintf(out, "lab %s  LAN %v %v  upstream %v  API server %s\n\n", cfg.Name, cfg.LAN, cfg.LAN6, cfg.Upstream, cfg.APIServerURL(st.Ports.APIServer))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COMPONENT\tPID\tNETNS\tSTATE\tDETAIL")
	for _, p := range st.Processes {
		state, detail := "running", ""
		switch {
		case !ours(p.Pid, cfg.StateDir):
			state, detail = "exited", "log: "+p.Log
		case checks[p.Name] != nil:
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := checks[p.Name](cctx); err != nil {
				state, detail = "unhealthy", err.Error()
			} else {
				state = "healthy"
			}
			cancel()
		case p.Name == "bird" && berr == nil:
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := cfg.birdStatus(cctx, birdc); err != nil {
				state, detail = "unhealthy", err.Error()
			} else {
				state = "healthy"
			}
			cancel()
		}
		if state != "healthy" && state != "running" {
			problems = append(problems, p.Name+" "+state)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", p.Name, p.Pid, orDash(p.Netns), state, detail)
	}
	tw.Flush()

	names, _ := netns.List(cfg.Prefix())
	fmt.Fprintf(out, "\nnetwork namespaces: %s\n\n", strings.Join(names, " "))

	client, err := AdminClient(cfg)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	nodes, err := client.CoreV1().Nodes().List(cctx, metav1.ListOptions{})
	if err != nil {
		problems = append(problems, "cannot list nodes: "+err.Error())
	} else {
		tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tREADY\tINTERNAL-IPS\tPOD-CIDRS")
		for _, n := range nodes.Items {
			var ips []string
			for _, a := range n.Status.Addresses {
				if a.Type == "InternalIP" {
					ips = append(ips, a.Address)
				}
			}
			ip := strings.Join(ips, ",")
			ready := NodeReady(&n)
			if !ready {
				problems = append(problems, "node "+n.Name+" not Ready")
			}
			fmt.Fprintf(tw, "%s\t%v\t%s\t%s\n", n.Name, ready, ip, orDash(strings.Join(n.Spec.PodCIDRs, ",")))
		}
		tw.Flush()
	}
	problems = append(problems, printWorkloads(cctx, client, cfg, out)...)
	printExternal(cctx, client, out)
	printGateways(cctx, cfg, out)
	if len(problems) > 0 {
		return fmt.Errorf("lab %s is not healthy: %s", cfg.Name, strings.Join(problems, "; "))
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
