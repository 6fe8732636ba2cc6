package lab

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// printGateways shows the lab's Gateways: class, addresses, and their
// Accepted and Programmed conditions as berth-controller wrote them.
func printGateways(ctx context.Context, cfg Config, out io.Writer) {
	c, err := GatewayClient(cfg)
	if err != nil {
		fmt.Fprintf(out, "\nGateways: %v\n", err)
		return
	}
	var gws gwv1.GatewayList
	if err := c.List(ctx, &gws); err != nil {
		fmt.Fprintf(out, "\nGateways: %v\n", err)
		return
	}
	if len(gws.Items) == 0 {
		return
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GATEWAY\tCLASS\tADDRESSES\tACCEPTED\tPROGRAMMED")
	for _, g := range gws.Items {
		var addrs []string
		for _, a := range g.Status.Addresses {
			addrs = append(addrs, a.Value)
		}
		fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%s\n", g.Namespace, g.Name, g.Spec.GatewayClassName, orDash(strings.Join(addrs, ",")),
			condText(g.Status.Conditions, string(gwv1.GatewayConditionAccepted)), condText(g.Status.Conditions, string(gwv1.GatewayConditionProgrammed)))
	}
	tw.Flush()
}

func condText(conds []metav1.Condition, typ string) string {
	c := meta.FindStatusCondition(conds, typ)
	if c == nil {
		return "-"
	}
	return fmt.Sprintf("%s (%s)", c.Status, c.Reason)
}
