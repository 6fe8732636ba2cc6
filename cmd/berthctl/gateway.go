package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/lab"
	"github.com/berthnet/berth/xds/adsclient"
)

func newGateway() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Inspect what Berth serves to the Envoys of a Gateway or IngressClass",
	}
	cmd.AddCommand(newGatewayConfig())
	return cmd
}

func newGatewayConfig() *cobra.Command {
	var (
		kubeconfig, xdsAddr, serverName, ingressClass, namespace, labName string
		timeout                                                           time.Duration
	)
	cmd := &cobra.Command{
		Use:   "config [NAMESPACE/GATEWAY]",
		Short: "Print the listeners, routes, clusters, endpoints and secrets a Gateway's Envoys are served",
		Long: `Connects to berth-controller's xDS server as an observer of the Gateway's node
group, with the client certificate the controller keeps in the Gateway's
fleet Secret in its own namespace (so it needs read access to that Secret), and prints what that
group is served, as YAML. Private keys are shown only as their digest. An
observer never counts as an Envoy: printing does not make a Gateway
Programmed. With --ingress-class, prints the IngressClass's configuration.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var dialOpts []grpc.DialOption
			if labName != "" {
				st, err := lab.LoadState(lab.StateRoot + "/" + labName)
				if err != nil {
					return fmt.Errorf("lab %q: %w", labName, err)
				}
				var done func()
				kubeconfig = st.Config.AdminKubeconfig()
				xdsAddr, serverName, dialOpts, done, err = st.Config.XDSEndpoint(cmd.Context())
				if err != nil {
					return fmt.Errorf("lab %q: %w", labName, err)
				}
				defer done()
			}
			var f adsclient.Fleet
			switch {
			case ingressClass != "" && len(args) == 0:
				f = adsclient.IngressFleet(namespace, ingressClass)
			case ingressClass == "" && len(args) == 1:
				ns, name, ok := strings.Cut(args[0], "/")
				if !ok || ns == "" || name == "" {
					return fmt.Errorf("want NAMESPACE/GATEWAY, got %q", args[0])
				}
				f = adsclient.GatewayFleet(namespace, ns, name)
			default:
				return fmt.Errorf("name a Gateway (NAMESPACE/GATEWAY) or an --ingress-class, not both")
			}
			if xdsAddr == "" {
				return fmt.Errorf("--xds-address is required (the controller's xDS Service, e.g. through kubectl port-forward -n berth-system svc/berth-xds 18000)")
			}
			rules := clientcmd.NewDefaultClientConfigLoadingRules()
			rules.ExplicitPath = kubeconfig
			rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
			if err != nil {
				return fmt.Errorf("kubeconfig: %w", err)
			}
			c, err := client.New(rc, client.Options{Scheme: scheme.Scheme})
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			cfg, versions, err := adsclient.FetchFleet(ctx, c, f, xdsAddr, serverName, dialOpts...)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "# node group %s, from %s\n", f.Group, xdsAddr)
			return adsclient.Print(cmd.OutOrStdout(), cfg, versions)
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig (default: $KUBECONFIG, then ~/.kube/config)")
	cmd.Flags().StringVar(&xdsAddr, "xds-address", "", "host:port of berth-controller's xDS server")
	cmd.Flags().StringVar(&serverName, "server-name", "", "name the xDS server's certificate carries (default: the --xds-address host; berth-xds.berth-system.svc through a port-forward)")
	cmd.Flags().StringVar(&ingressClass, "ingress-class", "", "print an IngressClass's configuration instead of a Gateway's")
	cmd.Flags().StringVar(&namespace, "namespace", "berth-system", "berth-controller's namespace (where every Envoy fleet lives)")
	cmd.Flags().StringVar(&labName, "lab", "", "take --kubeconfig and --xds-address from the named local lab")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "give up after this long")
	return cmd
}
