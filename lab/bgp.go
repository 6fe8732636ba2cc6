package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/berthnet/berth/lab/netns"
)

// The lab's nodes peer with its router over BGP: the router (BIRD, ASN
// RouterASN) learns the addresses of the lab-bgp pool from every node that
// advertises them (ASN NodeASN) and installs them with all their next hops,
// so the external client behind the router reaches them over ECMP.

const (
	// RouterASN and NodeASN are the lab's private AS numbers.
	RouterASN = 64500
	NodeASN   = 64512
	// BGPPoolName names the lab's BGP-announced IPPool, its BGPPeer
	// (the router) and its BGPAnnouncement.
	BGPPoolName = "lab-bgp"
	// BGPPeerName is the router's BGPPeer.
	BGPPeerName = "lab-router"
)

// BGPPool is the lab's BGP-announced pool: off the LAN, reached through
// the router. Only Services that ask for it (annotation berth.dev/ip-pool)
// take its addresses.
var BGPPool = netip.MustParsePrefix("198.51.100.0/28")

// BGPManifest is the lab's BGP pool, the router as a BGPPeer of every
// node, and the announcement of the pool to it.
func (c Config) BGPManifest() []byte {
	return []byte(fmt.Sprintf(`apiVersion: berth.dev/v1alpha1
kind: IPPool
metadata:
  name: %[1]s
spec:
  addresses: ["%[2]s"]
  autoAssign: false
  avoidBuggyIPs: true
---
apiVersion: berth.dev/v1alpha1
kind: BGPPeer
metadata:
  name: %[3]s
  labels: {lab: router}
spec:
  address: "%[4]s"
  peerASN: %[5]d
  localASN: %[6]d
  holdTime: 9s
---
apiVersion: berth.dev/v1alpha1
kind: BGPAnnouncement
metadata:
  name: %[1]s
spec:
  ipPools: [%[1]s]
  communities: [lab]
  communityAliases: [{name: lab, value: "%[6]d:100"}]
`, BGPPoolName, BGPPool, BGPPeerName, c.RouterLAN(), RouterASN, NodeASN))
}

// birdPeers is the router's BGP sessions, one per node.
func (c Config) birdPeers() string {
	var b strings.Builder
	for i := 1; i <= c.Nodes; i++ {
		fmt.Fprintf(&b, `
protocol bgp %s {
	local %s as %d;
	neighbor %s as %d;
	hold time 9;
	connect retry time 1;
	# Pod ranges learned from one node go to the others (pod network
	# mode bgp); nothing else.
	ipv4 { import all; export where source = RTS_BGP && net ~ [ %s+ ]; };
}
`, c.NodeName(i), c.RouterLAN(), RouterASN, c.NodeAddr(i), NodeASN, c.ClusterCIDR)
	}
	return b.String()
}

// WaitAddress waits for a Service's first LoadBalancer address.
func WaitAddress(ctx context.Context, c kubernetes.Interface, ns, name string, timeout time.Duration) (netip.Addr, error) {
	deadline := time.Now().Add(timeout)
	for {
		svc, err := c.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && len(svc.Status.LoadBalancer.Ingress) > 0 {
			return netip.ParseAddr(svc.Status.LoadBalancer.Ingress[0].IP)
		}
		if time.Now().After(deadline) {
			return netip.Addr{}, fmt.Errorf("service %s/%s has no address after %s (%v)", ns, name, timeout, err)
		}
		select {
		case <-ctx.Done():
			return netip.Addr{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Birdc asks the lab router's BIRD over its control socket.
func (c Config) Birdc(ctx context.Context, args ...string) (string, error) {
	_, birdc, err := findBird()
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, birdc, append([]string{"-s", c.birdSocket()}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("birdc %v: %v: %s", args, err, out)
	}
	return string(out), nil
}

// RouterRoute is the router's BIRD route for addr ("" when it has none).
func (c Config) RouterRoute(ctx context.Context, addr netip.Addr) (string, error) {
	out, err := c.Birdc(ctx, "show", "route", "for", addr.String(), "all")
	if strings.Contains(out, "Network not found") {
		return "", nil // birdc exits 1 then
	}
	return out, err
}

// demoBGP gives the demo's pods a LoadBalancer Service from the BGP pool
// and shows the external client, behind the router, reaching it over the
// router's ECMP route to every node. It returns the number of failures.
func demoBGP(ctx context.Context, cfg Config, c kubernetes.Interface, out io.Writer) int {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo-bgp", Namespace: DemoNamespace, Annotations: map[string]string{"berth.dev/ip-pool": BGPPoolName}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "echo"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}},
	}
	if _, err := c.CoreV1().Services(DemoNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		fmt.Fprintf(out, "    Service echo-bgp: %v\n", err)
		return 1
	}
	addr, err := WaitAddress(ctx, c, DemoNamespace, "echo-bgp", time.Minute)
	if err != nil {
		fmt.Fprintf(out, "• BGP: FAILED: %v\n", err)
		return 1
	}
	var hops int
	deadline := time.Now().Add(time.Minute)
	for {
		route, _ := cfg.RouterRoute(ctx, addr)
		hops = strings.Count(route, "via ")
		if hops == cfg.Nodes || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Fprintf(out, "• Service %s/echo-bgp (LoadBalancer, pool %s, BGPAnnouncement %s): %s, the router has %d of %d nodes as next hops\n",
		DemoNamespace, BGPPoolName, BGPPoolName, addr, hops, cfg.Nodes)
	ns, err := netns.Open(cfg.ExternalNamespace())
	if err != nil {
		fmt.Fprintf(out, "    %v\n", err)
		return 1
	}
	defer ns.Close()
	hostport := net.JoinHostPort(addr.String(), "8080")
	seen := map[string]bool{}
	failed := 0
	for i := 0; i < 3*cfg.Nodes; i++ {
		r, err := EchoUntil(ctx, ns, hostport, 30*time.Second)
		if err != nil {
			fmt.Fprintf(out, "    external client → %s FAILED: %v\n", hostport, err)
			failed++
			break
		}
		seen[r.PodIP+" on "+r.Node] = true
	}
	var pods []string
	for p := range seen {
		pods = append(pods, p)
	}
	sort.Strings(pods)
	if failed == 0 {
		fmt.Fprintf(out, "    external client → %-21s answered by %s\n", hostport, strings.Join(pods, ", "))
	}
	if hops != cfg.Nodes {
		failed++
	}
	return failed
}
