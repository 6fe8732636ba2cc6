package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/berthnet/berth/lab"
)

func newLab() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "A local bare-metal cluster on this machine, in network namespaces",
		Long: `The lab runs a Kubernetes control plane on this machine and puts nodes, a
BGP router (BIRD) and clients in network namespaces on a lab LAN. It needs
root. Several labs can run at once with different --name and --lan.`,
	}
	cmd.AddCommand(newLabUp(), newLabDown(), newLabStatus(), newLabKubeconfig(), newLabDemo(), newLabRestartAgent(), newLabRestartNode(), newLabRealNode())
	return cmd
}

// nameFlags are the flags that find a lab.
type nameFlags struct {
	name     string
	stateDir string
}

func (f *nameFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.name, "name", lab.DefaultName, "lab name (prefixes its namespaces and links)")
	cmd.Flags().StringVar(&f.stateDir, "state-dir", "", "lab state folder (default "+lab.StateRoot+"/<name>)")
}

func (f *nameFlags) dir() string {
	if f.stateDir != "" {
		return filepath.Clean(f.stateDir)
	}
	return filepath.Join(lab.StateRoot, f.name)
}

func newLabUp() *cobra.Command {
	var nf nameFlags
	cfg := lab.Default()
	var lan, lan6, upstream string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start the lab: network, control plane, router and nodes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Name = nf.name
			cfg.StateDir = nf.dir()
			var err error
			if cfg.LAN, err = netip.ParsePrefix(lan); err != nil {
				return fmt.Errorf("--lan: %w", err)
			}
			cfg.LAN6 = lab.LAN6For(cfg.LAN)
			if lan6 != "" {
				if cfg.LAN6, err = netip.ParsePrefix(lan6); err != nil {
					return fmt.Errorf("--lan6: %w", err)
				}
			}
			if cfg.Upstream, err = netip.ParsePrefix(upstream); err != nil {
				return fmt.Errorf("--upstream: %w", err)
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			if cfg.K8sBinDir == "" {
				cfg.K8sBinDir = filepath.Join(filepath.Dir(self), "k8s")
			}
			setRealNodeDefaults(&cfg, filepath.Dir(self))
			return lab.Up(cmd.Context(), cfg, self, cmd.OutOrStdout())
		},
	}
	nf.add(cmd)
	cmd.Flags().IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "number of nodes")
	cmd.Flags().IntVar(&cfg.NodeCIDRMaskSize, "node-cidr-mask-size", cfg.NodeCIDRMaskSize, "size of each node's IPv4 podCIDR (kube-controller-manager's --node-cidr-mask-size-ipv4; /28 holds 13 pods)")
	cmd.Flags().StringVar(&lan, "lan", cfg.LAN.String(), "the lab LAN (IPv4 prefix)")
	cmd.Flags().StringVar(&lan6, "lan6", "", "the lab LAN's IPv6 /64 (default: derived from --lan, fdbe:c612::/64 for 198.18.0.0/24)")
	cmd.Flags().StringVar(&upstream, "upstream", cfg.Upstream.String(), "the link between the router and the external client")
	cmd.Flags().StringVar(&cfg.PodNetworkMode, "pod-network-mode", cfg.PodNetworkMode, "berth-agent's pod network mode: routed, vxlan, auto or bgp (pod ranges over BGP through the lab router)")
	cmd.Flags().BoolVar(&cfg.ServiceProxy, "service-proxy", cfg.ServiceProxy, "run berth-agent's nftables service proxy on the nodes")
	cmd.Flags().StringVar(&cfg.NodeBinDir, "node-bin-dir", "", "folder with kubelet, containerd, containerd-shim-runc-v2, ctr and runc (default: node/ beside berthctl)")
	cmd.Flags().StringVar(&cfg.ImagesDir, "images-dir", "", "folder with the image tarballs every node imports (default: images/ beside berthctl; `make images`)")
	cmd.Flags().StringVar(&cfg.ChartDir, "chart", "", "Berth's chart (default: charts/berth of the repository berthctl was built in)")
	cmd.Flags().StringVar(&cfg.Helm, "helm", "", "the helm binary (default: the newest tools/helm-* beside berthctl)")
	cmd.Flags().StringVar(&cfg.K8sBinDir, "k8s-bin-dir", "", "folder with etcd, kube-apiserver, kube-controller-manager, kube-scheduler (default: k8s/ beside berthctl)")
	return cmd
}

// setRealNodeDefaults fills the real nodes' inputs that no flag gave from
// the repository's layout: bin/ holds berthctl, node/, images/ and tools/,
// and charts/berth is beside bin/.
func setRealNodeDefaults(cfg *lab.Config, bin string) {
	if cfg.NodeBinDir == "" {
		cfg.NodeBinDir = filepath.Join(bin, "node")
	}
	if cfg.ImagesDir == "" {
		cfg.ImagesDir = filepath.Join(bin, "images")
	}
	if cfg.ChartDir == "" {
		cfg.ChartDir = filepath.Join(filepath.Dir(bin), "charts", "berth")
	}
	if cfg.Helm == "" {
		cfg.Helm = filepath.Join(bin, "tools", "helm")
		if found, _ := filepath.Glob(filepath.Join(bin, "tools", "helm-*")); len(found) > 0 {
			sort.Strings(found)
			cfg.Helm = found[len(found)-1]
		}
	}
}

// labCommand is a command about an existing lab, found by --name.
func labCommand(use, short string, run func(cmd *cobra.Command, nf *nameFlags) error) *cobra.Command {
	var nf nameFlags
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return run(cmd, &nf) },
	}
	nf.add(cmd)
	return cmd
}

func newLabDown() *cobra.Command {
	return labCommand("down", "Remove every process, namespace, link and file of the lab", func(cmd *cobra.Command, nf *nameFlags) error {
		return lab.Down(nf.name, nf.dir(), cmd.OutOrStdout())
	})
}

func newLabStatus() *cobra.Command {
	return labCommand("status", "Show what runs in the lab and whether it is healthy", func(cmd *cobra.Command, nf *nameFlags) error {
		return lab.Status(cmd.Context(), nf.dir(), cmd.OutOrStdout())
	})
}

func newLabKubeconfig() *cobra.Command {
	var pathOnly bool
	cmd := labCommand("kubeconfig", "Print the lab's admin kubeconfig (or its path)", func(cmd *cobra.Command, nf *nameFlags) error {
		st, err := lab.LoadState(nf.dir())
		if err != nil {
			return fmt.Errorf("lab %q: %w", nf.name, err)
		}
		if pathOnly {
			_, err = fmt.Fprintln(cmd.OutOrStdout(), st.Config.AdminKubeconfig())
			return err
		}
		b, err := os.ReadFile(st.Config.AdminKubeconfig())
		if err != nil {
			return err
		}
		_, err = cmd.OutOrStdout().Write(b)
		return err
	})
	cmd.Flags().BoolVar(&pathOnly, "path", false, "print the file's path instead of its content")
	return cmd
}

// nodeCommand is a hidden command `lab up` runs inside a node namespace:
// it loads the lab's state and runs what start builds for that node.
func nodeCommand(use, short string, start func(cfg lab.Config, node int, log *slog.Logger) (func(context.Context) error, error)) *cobra.Command {
	var stateDir string
	var node int
	cmd := &cobra.Command{
		Use:    use,
		Short:  short,
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := lab.LoadState(strings.TrimSuffix(stateDir, "/"))
			if err != nil {
				return err
			}
			run, err := start(st.Config, node, slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)))
			if err != nil {
				return err
			}
			return run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", "", "the lab's state folder")
	cmd.Flags().IntVar(&node, "node", 0, "the node's number, from 1")
	return cmd
}

// newLabRealNode runs a node's containerd and kubelet.
func newLabRealNode() *cobra.Command {
	return nodeCommand("real-node", "Run one lab node's containerd and kubelet (started by lab up)",
		func(cfg lab.Config, node int, log *slog.Logger) (func(context.Context) error, error) {
			return lab.RunRealNode(cfg, node, log)
		})
}

func newLabRestartNode() *cobra.Command {
	var node int
	cmd := labCommand("restart-node", "Stop a real node's kubelet, pods and containerd and start them again, as a reboot would", func(cmd *cobra.Command, nf *nameFlags) error {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		return lab.RestartNode(cmd.Context(), nf.dir(), node, self, cmd.OutOrStdout())
	})
	cmd.Flags().IntVar(&node, "node", 1, "which node (1 to the lab's node count)")
	return cmd
}

func newLabRestartAgent() *cobra.Command {
	var (
		node    int
		downFor time.Duration
		kill    bool
	)
	cmd := labCommand("restart-agent", "Restart one node's berth-agent (what the kernel holds stays in place meanwhile)", func(cmd *cobra.Command, nf *nameFlags) error {
		return lab.RestartAgent(cmd.Context(), nf.dir(), node, downFor, kill, cmd.OutOrStdout())
	})
	cmd.Flags().IntVar(&node, "node", 1, "which node (1 to the lab's node count)")
	cmd.Flags().DurationVar(&downFor, "down-for", 0, "how long the agent stays stopped before it starts again (on real nodes: the node leaves the agent DaemonSet's node selector, its kubernetes.io/os label, for that long)")
	cmd.Flags().BoolVar(&kill, "kill", false, "stop it with SIGKILL, as a crash would (default: SIGTERM, as a rolling update does)")
	return cmd
}

func newLabDemo() *cobra.Command {
	return labCommand("demo", "Run an echo pod on every node and show each pod reaching the others", func(cmd *cobra.Command, nf *nameFlags) error {
		st, err := lab.LoadState(nf.dir())
		if err != nil {
			return fmt.Errorf("lab %q: %w", nf.name, err)
		}
		return lab.Demo(cmd.Context(), st.Config, cmd.OutOrStdout())
	})
}
