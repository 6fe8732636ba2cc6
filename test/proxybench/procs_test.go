package proxybench

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/proxy"
	"github.com/berthnet/berth/test/kubetest"
	"github.com/berthnet/berth/test/proctest"
)

// proxyKind is one proxy under test: its binary and flags, and the
// nftables table it writes.
type proxyKind struct {
	name   string
	family uint8 // NFPROTO_* of its table
	table  string
	bin    string
	args   []string
}

// berthProxy is berth-agent with only the service proxy on.
func berthProxy(bin, kubeconfig string) proxyKind {
	k := proxyKind{name: "berth", family: unix.NFPROTO_INET, table: proxy.Table, bin: bin, args: []string{
		"--node-name", nodeName, "--kubeconfig", kubeconfig,
		"--pod-network=false", "--service-proxy=true",
		// The service proxy alone: the cluster has none of Berth's CRDs.
		"--bgp=false", "--l2-announce=false", "--network-policy=false",
		// Inside the proxy's own namespace, so the ports are free.
		"--metrics-bind-address", "127.0.0.1:9190", "--health-probe-bind-address", "127.0.0.1:9191",
	}}
	if pprofDir() != "" {
		k.args = append(k.args, "--pprof-bind-address", pprofAddr)
	}
	return k
}

// kubeProxy is upstream kube-proxy in nftables mode with its defaults
// (min sync period 1 s, sync period 30 s), except where a network
// namespace needs otherwise: --conntrack-max-per-core=0 leaves
// nf_conntrack_max alone, a sysctl only the host's namespace may write.
// Its IPv4 rules are in table ip kube-proxy (it also keeps an empty
// ip6 kube-proxy).
func kubeProxy(bin, kubeconfig string) proxyKind {
	return proxyKind{name: "kube-proxy", family: unix.NFPROTO_IPV4, table: "kube-proxy", bin: bin, args: []string{
		"--proxy-mode=nftables", "--kubeconfig", kubeconfig, "--hostname-override", nodeName,
		"--cluster-cidr", clusterNet, "--conntrack-max-per-core=0",
		"--metrics-bind-address", "127.0.0.1:10249", "--healthz-bind-address", "127.0.0.1:10256",
		"-v=2",
	}}
}

// agentBinary is $BERTH_PROXYBENCH_AGENT, or berth-agent built from this
// checkout the way `make build` builds it.
func agentBinary(b *testing.B) string {
	return proctest.Build(b, "./cmd/berth-agent", "BERTH_PROXYBENCH_AGENT")
}

// kubeProxyBinary is bin/k8s/kube-proxy, or "" when it is not built.
func kubeProxyBinary(b *testing.B) string {
	b.Helper()
	dir, err := kubetest.BinDir()
	if err != nil {
		b.Fatal(err)
	}
	p := filepath.Join(dir, "kube-proxy")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// startProxy starts k inside ns and returns it with the time just before
// the start; it is stopped, and its log shown on failure, when b ends.
func startProxy(b *testing.B, ns *netns.Namespace, k proxyKind) (*proctest.Proc, time.Time) {
	b.Helper()
	// nsenter execs the proxy in place: the pid is the proxy's.
	return proctest.Start(b, k.name, ns.Command(context.Background(), k.bin, k.args...))
}
