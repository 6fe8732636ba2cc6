package lab

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// printWorkloads shows, on real nodes, the workloads the lab installed:
// berth-agent (one per node), berth-controller and CoreDNS, with how many
// are ready. It returns what is not: an agent missing on a node, or no
// ready controller or CoreDNS replica. (The Gateway and Ingress Envoy
// fleets are left out: no Envoy image can run here.)
func printWorkloads(ctx context.Context, c kubernetes.Interface, cfg Config, out io.Writer) []string {
	var problems []string
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nWORKLOAD\tREADY\tWANT")
	if ds, err := c.AppsV1().DaemonSets(Namespace).Get(ctx, "berth-agent", metav1.GetOptions{}); err != nil {
		problems = append(problems, "berth-agent: "+err.Error())
	} else {
		fmt.Fprintf(tw, "%s/daemonset/berth-agent\t%d\t%d\n", Namespace, ds.Status.NumberReady, cfg.Nodes)
		if int(ds.Status.NumberReady) < cfg.Nodes {
			problems = append(problems, fmt.Sprintf("berth-agent ready on %d of %d nodes", ds.Status.NumberReady, cfg.Nodes))
		}
	}
	for _, d := range []struct{ ns, name string }{{Namespace, "berth-controller"}, {"kube-system", "coredns"}} {
		dep, err := c.AppsV1().Deployments(d.ns).Get(ctx, d.name, metav1.GetOptions{})
		if err != nil {
			problems = append(problems, d.name+": "+err.Error())
			continue
		}
		want := int32(1)
		if dep.Spec.Replicas != nil {
			want = *dep.Spec.Replicas
		}
		fmt.Fprintf(tw, "%s/deployment/%s\t%d\t%d\n", d.ns, d.name, dep.Status.ReadyReplicas, want)
		if (d.name == "coredns" && dep.Status.ReadyReplicas == 0) || (d.name == "berth-controller" && dep.Status.AvailableReplicas == 0) {
			problems = append(problems, d.name+" has no ready replica")
		}
	}
	tw.Flush()
	return problems
}
