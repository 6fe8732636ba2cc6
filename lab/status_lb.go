package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/berthnet/berth/api/v1alpha1"
)

// printExternal shows the lab's LoadBalancer Services with their addresses
// and who announces them at layer 2, and each node's BGP sessions, as the
// agents report them.
func printExternal(ctx context.Context, c kubernetes.Interface, out io.Writer) {
	svcs, err := c.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		fmt.Fprintf(out, "\nLoadBalancer Services: %v\n", err)
		return
	}
	var lbs []corev1.Service
	for _, s := range svcs.Items {
		if s.Spec.Type == corev1.ServiceTypeLoadBalancer {
			lbs = append(lbs, s)
		}
	}
	if len(lbs) > 0 {
		sort.Slice(lbs, func(i, j int) bool { return lbs[i].Namespace+"/"+lbs[i].Name < lbs[j].Namespace+"/"+lbs[j].Name })
		fmt.Fprintln(out)
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "LOADBALANCER\tADDRESSES\tLAYER 2")
		for _, s := range lbs {
			var addrs []string
			for _, ing := range s.Status.LoadBalancer.Ingress {
				addrs = append(addrs, ing.IP)
			}
			l2 := "-"
			if cond := meta.FindStatusCondition(s.Status.Conditions, ConditionL2Announced); cond != nil {
				l2 = cond.Message
			}
			fmt.Fprintf(tw, "%s/%s\t%s\t%s\n", s.Namespace, s.Name, orDash(strings.Join(addrs, ",")), l2)
		}
		tw.Flush()
	}

	raw, err := c.CoreV1().RESTClient().Get().AbsPath("/apis", v1alpha1.GroupVersion.Group, v1alpha1.GroupVersion.Version, "bgppeers").DoRaw(ctx)
	if err != nil {
		fmt.Fprintf(out, "\nBGP peers: %v\n", err)
		return
	}
	var peers v1alpha1.BGPPeerList
	if err := json.Unmarshal(raw, &peers); err != nil || len(peers.Items) == 0 {
		return
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BGP PEER\tNODE\tSTATE\tADVERTISED\tACCEPTED\tLAST ERROR")
	for _, p := range peers.Items {
		nodes := p.Status.Nodes
		sort.Slice(nodes, func(i, j int) bool { return nodes[i].Node < nodes[j].Node })
		for _, n := range nodes {
			fmt.Fprintf(tw, "%s (%s AS %d)\t%s\t%s\t%d\t%d\t%s\n", p.Name, p.Spec.Address, p.Spec.PeerASN, n.Node, n.State,
				n.PrefixesAdvertised, n.PrefixesAccepted, orDash(n.LastError))
		}
	}
	tw.Flush()
}
