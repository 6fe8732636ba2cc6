// Package privilege_test runs the real berth-agent with exactly the
// capabilities the chart grants it, after its init container, and shows
// that it does its work with them and fails without either one.
package privilege_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/internal/daemon"
	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/kubetest"
	"github.com/berthnet/berth/test/netnstest"
	"github.com/berthnet/berth/test/proctest"
)

func TestMain(m *testing.M) { netnstest.Main(m) }

// The chart's capability set for the agent container
// (charts/berth/templates/agent.yaml; test/chart checks the chart says so).
var chartCaps = []string{"net_admin", "net_raw"}

const (
	nodeAddr  = "192.0.2.1"
	peerAddr  = "192.0.2.9"
	lbAddr    = "192.0.2.241"
	probePort = "9191"
)

// rig is the API server the agents of every scenario talk to, with the
// objects that give an agent work in each of its parts: a LoadBalancer
// Service with an address of a pool that an L2Announcement covers.
type rig struct {
	env        *kubetest.Env
	admin      client.Client
	kubeconfig string
	agent, cni string
}

func newRig(t *testing.T) *rig {
	netnstest.RequireRoot(t)
	for _, tool := range []string{"nsenter", "unshare", "setpriv", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s (util-linux, nftables) is needed to run the agent as its container would: %v", tool, err)
		}
	}
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	env := kubetest.Start(t, kubetest.Options{CRDPaths: []string{filepath.Join(root, "config/crd/bases")}})
	scheme, err := daemon.Scheme(v1alpha1.AddToScheme)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := client.New(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The agent's own rights: the generated roles, bound to a user.
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "berth-system"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "priv-web"}},
	} {
		if err := admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	kubetest.Apply(t, env.Config, filepath.Join(root, "config/rbac/agent/role.yaml"))
	const user = "privilege-test-agent"
	if err := admin.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "berth-agent"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}); err != nil {
		t.Fatal(err)
	}
	kubeconfig, _ := env.User(t, user)

	yes := true
	pool := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "priv-pool"},
		Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.Address{"192.0.2.240/28"}, AutoAssign: &yes}}
	ann := &v1alpha1.L2Announcement{ObjectMeta: metav1.ObjectMeta{Name: "priv-l2"},
		Spec: v1alpha1.L2AnnouncementSpec{IPPools: []string{"priv-pool"}}}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "priv-web", Name: "web"}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Name: "http", Port: 80}},
	}}
	for _, o := range []client.Object{pool, ann, svc} {
		if err := admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: lbAddr}}
	if err := admin.Status().Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	return &rig{
		env: env, admin: admin, kubeconfig: kubeconfig,
		agent: proctest.Build(t, "./cmd/berth-agent", "BERTH_AGENT"),
		cni:   proctest.Build(t, "./cmd/berth-cni", "BERTH_CNI"),
	}
}

// node is one scenario's node: its own network namespace, with uplink up0
// to a LAN namespace, and its own Node object with its own pod range.
type node struct {
	name     string
	ns, lan  *netns.Namespace
	podCIDR  string
	conf     string // CNI config folder
	bin      string // CNI plugin folder
	agentLog func() string
}

func (r *rig) newNode(t *testing.T, name, podCIDR string) *node {
	n := &node{name: name, ns: netnstest.New(t), lan: netnstest.New(t), podCIDR: podCIDR, conf: t.TempDir(), bin: t.TempDir()}
	if err := netns.Veth(n.ns, "up0", n.lan, "lan0"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		ns         *netns.Namespace
		link, cidr string
	}{{n.ns, "up0", nodeAddr + "/24"}, {n.lan, "lan0", peerAddr + "/24"}} {
		if err := s.ns.AddAddress(s.link, s.cidr); err != nil {
			t.Fatal(err)
		}
		if err := s.ns.Up(s.link); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	nd := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: podCIDR, PodCIDRs: []string{podCIDR}}}
	if err := r.admin.Create(ctx, nd); err != nil {
		t.Fatal(err)
	}
	nd.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: nodeAddr}}
	nd.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if err := r.admin.Status().Update(ctx, nd); err != nil {
		t.Fatal(err)
	}
	// One node at a time: the next scenario's agent must not take this
	// one for a peer.
	t.Cleanup(func() {
		if err := r.admin.Delete(context.Background(), nd); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete node %s: %v", name, err)
		}
	})
	u, err := url.Parse(r.env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	netnstest.Forward(t, n.ns, u.Host)
	return n
}

// initKernel runs `berth-agent init` in the node's namespace with every
// capability, as the chart's privileged init container.
func (r *rig) initKernel(t *testing.T, n *node) {
	cmd := n.ns.Command(context.Background(), r.agent, "init", "--pod-network=true", "--network-policy=true")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("berth-agent init: %v\n%s", err, out)
	}
	for _, want := range []string{"/proc/sys/net/ipv4/ip_forward = 1", "/proc/sys/net/bridge/bridge-nf-call-iptables = 1"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("berth-agent init said %q, want a line %q", out, want)
		}
	}
}

// startAgent runs berth-agent in the node's namespace as root with only
// caps in its bounding set, no inheritable or ambient capabilities, no new
// privileges, a read-only root and /proc/sys, and only the CNI folders
// writable: the container the chart describes.
func (r *rig) startAgent(t *testing.T, n *node, caps []string) {
	key := filepath.Join(t.TempDir(), "l2-key")
	b := make([]byte, 32)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, []byte(fmt.Sprintf("%x", b)), 0o400); err != nil {
		t.Fatal(err)
	}
	bounding := "-all"
	for _, c := range caps {
		bounding += ",+" + c
	}
	args := []string{
		"--net=" + n.ns.Path(), "--",
		"unshare", "--mount", "--propagation", "private", "--",
		// The CNI folders stay writable (the chart's hostPath volumes) as
		// their own mounts; the root and /proc/sys become read-only.
		"sh", "-c", `mount --bind -o ro /proc/sys /proc/sys && mount --bind "$1" "$1" && mount --bind "$2" "$2" &&
			mount -o remount,bind,ro / && shift 2 && exec "$@"`, "sh", n.conf, n.bin,
		"setpriv", "--bounding-set", bounding, "--inh-caps", "-all", "--ambient-caps", "-all", "--no-new-privs", "--",
		r.agent, "--node-name", n.name, "--kubeconfig", r.kubeconfig, "--namespace", "berth-system",
		"--serve-address", nodeAddr, "--metrics-bind-address", ":9190", "--health-probe-bind-address", ":" + probePort,
		"--metrics-secure=true",
		"--pod-network=true", "--pod-network-mode=routed", "--cni-conf-dir", n.conf, "--cni-bin-dir", n.bin,
		"--cni-plugin-source", r.cni, "--resync=1s",
		"--service-proxy=true", "--network-policy=true", "--bgp=true",
		"--l2-announce=true", "--l2-key-file", key,
	}
	p, _ := proctest.Start(t, "berth-agent-"+n.name, exec.Command("nsenter", args...))
	n.agentLog = func() string { return p.Tail(60) }
}

// readyz is the agent's verbose readiness on the node's address, from the
// node's namespace: the status code and the body ("[+]podnet ok" lines).
func readyz(n *node) (int, string, error) {
	resp, err := netnstest.HTTPClient(n.ns).Get("http://" + net.JoinHostPort(nodeAddr, probePort) + "/readyz?verbose")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// waitFor polls cond until it holds or a minute passes.
func waitFor(t *testing.T, n *node, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	last := ""
	for {
		ok, seen := cond()
		if ok {
			return
		}
		last = seen
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute; last seen: %s", what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// nodeEvent is the message of the newest event with reason on the node.
func (r *rig) nodeEvent(n *node, reason string) string {
	var evs corev1.EventList
	if err := r.admin.List(context.Background(), &evs); err != nil {
		return ""
	}
	msg := ""
	for _, e := range evs.Items {
		if e.InvolvedObject.Kind == "Node" && e.InvolvedObject.Name == n.name && e.Reason == reason {
			msg = e.Message
		}
	}
	return msg
}

// tables lists the nftables tables of the node's namespace ("inet berth-proxy").
func tables(t *testing.T, n *node) string {
	var out []byte
	if err := n.ns.Do(func() (err error) {
		out, err = exec.Command("nft", "list", "tables").CombinedOutput()
		return err
	}); err != nil {
		t.Fatalf("nft list tables: %v: %s", err, out)
	}
	return string(out)
}

func bridgeAddrs(n *node) []string {
	l, err := n.ns.Netlink().LinkByName("berth0")
	if err != nil {
		return nil
	}
	addrs, _ := n.ns.Netlink().AddrList(l, netlink.FAMILY_V4)
	var out []string
	for _, a := range addrs {
		out = append(out, a.IPNet.String())
	}
	return out
}

// arpAnswered reports whether a host on the LAN learned lbAddr at the
// node's uplink MAC: it sends a datagram there, so its kernel asks ARP,
// and the agent's responder answers.
func arpAnswered(t *testing.T, n *node) (bool, string) {
	up, err := n.ns.Link("up0")
	if err != nil {
		t.Fatal(err)
	}
	_ = n.lan.Do(func() error {
		c, err := net.Dial("udp4", net.JoinHostPort(lbAddr, "9"))
		if err == nil {
			_, _ = c.Write([]byte("who"))
			c.Close()
		}
		return nil
	})
	lan0, err := n.lan.Link("lan0")
	if err != nil {
		t.Fatal(err)
	}
	neighs, _ := n.lan.Netlink().NeighList(lan0.Attrs().Index, netlink.FAMILY_V4)
	for _, nb := range neighs {
		if nb.IP.String() == lbAddr {
			seen := fmt.Sprintf("%s at %v state %#x", lbAddr, nb.HardwareAddr, nb.State)
			return nb.HardwareAddr.String() == up.Attrs().HardwareAddr.String() &&
				nb.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE) != 0, seen
		}
	}
	return false, "no neighbour entry for " + lbAddr
}
