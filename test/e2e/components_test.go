package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/kubetest"
	"github.com/berthnet/berth/test/labtest"
	"github.com/berthnet/berth/test/netnstest"
)

// Every binary reports the version it was stamped with.
func TestBinariesReportVersion(t *testing.T) {
	t.Parallel()
	bin := labtest.Build(t)
	for _, args := range [][]string{
		{"berthctl", "version"},
		{"berth-controller", "--version"},
		{"berth-agent", "--version"},
	} {
		out, err := exec.Command(filepath.Join(bin.Dir, args[0]), args[1:]...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), labtest.TestVersion) {
			t.Errorf("%v: err=%v, want output with %s, got %q", args, err, labtest.TestVersion, out)
		}
	}
}

// berth-cni speaks the CNI protocol as a runtime calls it: VERSION lists the
// spec versions, and STATUS says the plugin is not available (code 50) while
// the node has no pod network.
func TestCNIVersionAndStatus(t *testing.T) {
	t.Parallel()
	bin := labtest.Build(t)
	ns := netnstest.New(t)
	run := func(command string) ([]byte, error) {
		cmd := ns.Command(context.Background(), filepath.Join(bin.Dir, "berth-cni"))
		cmd.Env = []string{"CNI_COMMAND=" + command, "CNI_PATH=" + bin.Dir}
		cmd.Stdin = strings.NewReader(`{"cniVersion":"1.1.0","name":"berth","type":"berth-cni"}`)
		return cmd.Output()
	}
	out, err := run("VERSION")
	if err != nil {
		t.Fatalf("VERSION: %v", err)
	}
	var v struct {
		CNIVersion        string   `json:"cniVersion"`
		SupportedVersions []string `json:"supportedVersions"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("VERSION output %q: %v", out, err)
	}
	if strings.Join(v.SupportedVersions, ",") != "0.3.0,0.3.1,0.4.0,1.0.0,1.1.0" {
		t.Errorf("supportedVersions = %v", v.SupportedVersions)
	}
	out, err = run("STATUS")
	if err == nil {
		t.Fatal("STATUS succeeded on a node with no pod network")
	}
	var e struct {
		Code uint   `json:"code"`
		Msg  string `json:"msg"`
	}
	if jerr := json.Unmarshal(out, &e); jerr != nil || e.Code != 50 {
		t.Errorf("STATUS: want a CNI error with code 50, got %q (%v)", out, jerr)
	}
}

// berth-controller runs with nothing more than its generated role: it wins
// the leader lease in its namespace, turns ready, gives a LoadBalancer
// Service an address from an IPPool, and hands the lease back on SIGTERM so a
// successor takes over at once.
func TestControllerLeadsWithItsRole(t *testing.T) {
	t.Parallel()
	bin := labtest.Build(t)
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	env := kubetest.Start(t, kubetest.Options{CRDPaths: []string{filepath.Join(root, "config/crd/bases")}})
	admin := adminClient(t, env)
	ctx := context.Background()
	const ns, user = "berth-system", "berth-controller-test"
	if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	kubetest.Apply(t, env.Config, filepath.Join(root, "config/rbac/controller/role.yaml"))
	bindUser(t, admin, user, "berth-controller", ns)
	kubeconfig, _ := env.User(t, user)

	// Its own namespace: the xDS server listens on every address (:18000).
	netNS := componentNS(t, env)
	web := netnstest.HTTPClient(netNS)
	cmd := netNS.Command(context.Background(), filepath.Join(bin.Dir, "berth-controller"),
		"--kubeconfig", kubeconfig,
		"--leader-election-namespace", ns,
		"--metrics-bind-address", "127.0.0.1:8080",
		"--health-probe-bind-address", probe)
	logs := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("berth-controller log:\n%s", logs)
		}
	})

	waitUntil(t, time.Minute, "controller ready", func() error { return httpOK(web, probe, "/readyz") })
	lease := &coordinationv1.Lease{}
	key := client.ObjectKey{Namespace: ns, Name: "berth-controller.berth.dev"}
	waitUntil(t, time.Minute, "leader lease held", func() error {
		if err := admin.Get(ctx, key, lease); err != nil {
			return err
		}
		if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
			return fmt.Errorf("no holder")
		}
		return nil
	})

	kubetest.Apply(t, env.Config, filepath.Join(root, "test/e2e/testdata/lb.yaml"))
	waitUntil(t, time.Minute, "Service gets an address", func() error {
		var svc corev1.Service
		if err := admin.Get(ctx, client.ObjectKey{Namespace: "default", Name: "web"}, &svc); err != nil {
			return err
		}
		if ing := svc.Status.LoadBalancer.Ingress; len(ing) != 1 || ing[0].IP != "192.0.2.10" {
			return fmt.Errorf("ingress %v", ing)
		}
		return nil
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Errorf("berth-controller exited with %v on SIGTERM, want 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("berth-controller did not exit on SIGTERM")
	}
	if err := admin.Get(ctx, key, lease); err != nil {
		t.Fatal(err)
	}
	if lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "" {
		t.Errorf("lease still held by %q after shutdown; want it released", *lease.Spec.HolderIdentity)
	}
}

// berth-agent runs with its generated role, turns ready once it sees its own
// Node, and stays unready, saying why, when its Node does not exist. Each
// agent runs in a namespace of its own, as on a node: it programs nftables
// (service proxy, NetworkPolicy) where it runs, and those tables stay when it
// is killed.
func TestAgentFindsItsNode(t *testing.T) {
	t.Parallel()
	bin := labtest.Build(t)
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// Berth's CRDs are there, as the release installs them: the agent
	// watches IPPools, announcements and peers.
	env := kubetest.Start(t, kubetest.Options{CRDPaths: []string{filepath.Join(root, "config/crd/bases")}})
	admin := adminClient(t, env)
	ctx := context.Background()
	if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "berth-system"}}); err != nil {
		t.Fatal(err)
	}
	kubetest.Apply(t, env.Config, filepath.Join(root, "config/rbac/agent/role.yaml"))
	bindUser(t, admin, "berth-agent-test", "berth-agent", "berth-system")
	kubeconfig, _ := env.User(t, "berth-agent-test")
	n1 := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	if err := admin.Create(ctx, n1); err != nil {
		t.Fatal(err)
	}
	// The kubelet gives every Node an InternalIP; the agent listens for
	// layer-2 heartbeats there. Its namespace has loopback alone.
	n1.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	if err := admin.Status().Update(ctx, n1); err != nil {
		t.Fatal(err)
	}

	// The heartbeat key the release mounts from a Secret: layer-2
	// announcement stays on, as every component the agent runs by default.
	l2Key := filepath.Join(t.TempDir(), "l2-key")
	if err := os.WriteFile(l2Key, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	var nodeNS []*netns.Namespace
	start := func(node string) *http.Client {
		ns := componentNS(t, env)
		nodeNS = append(nodeNS, ns)
		cmd := ns.Command(context.Background(), filepath.Join(bin.Dir, "berth-agent"),
			"--kubeconfig", kubeconfig, "--node-name", node, "--pod-network=false", "--l2-key-file", l2Key,
			"--metrics-bind-address", "0", "--health-probe-bind-address", probe)
		logs := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("berth-agent %s log:\n%s", node, logs)
			}
		})
		return netnstest.HTTPClient(ns)
	}
	good := start("n1")
	missing := start("n2")
	waitUntil(t, time.Minute, "agent on n1 ready", func() error { return httpOK(good, probe, "/readyz") })
	waitUntil(t, time.Minute, "agent on n2 explains it has no node", func() error {
		body, code, err := httpGet(missing, probe, "/readyz?verbose")
		if err != nil {
			return err
		}
		if code == http.StatusOK || !strings.Contains(body, "node") {
			return fmt.Errorf("readyz %d: %s", code, body)
		}
		return nil
	})
	if err := httpOK(missing, probe, "/readyz"); err == nil {
		t.Error("agent without a Node reports ready")
	}

	// The ready agent's service proxy and NetworkPolicy tables are in its
	// namespace, and none are in the host's.
	want := []string{"table inet berth-netpol", "table inet berth-proxy"}
	waitUntil(t, time.Minute, "agent on n1 programs its namespace", func() error {
		if got := berthTables(t, nodeNS[0]); !slices.Equal(got, want) {
			return fmt.Errorf("tables in %s: %q, want %q", nodeNS[0], got, want)
		}
		return nil
	})
	host, err := netns.Host()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	if got := berthTables(t, host); len(got) != 0 {
		t.Errorf("Berth tables in the host's namespace: %q; an agent ran there. Remove them: nft delete table inet <name>", got)
	}
}

// berthTables lists the nftables tables named berth-* in ns, sorted.
func berthTables(t *testing.T, ns *netns.Namespace) []string {
	t.Helper()
	out, err := ns.Command(context.Background(), "nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables in %s: %v\n%s", ns, err, out)
	}
	var tables []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(line, " berth-") {
			tables = append(tables, line)
		}
	}
	slices.Sort(tables)
	return tables
}

func adminClient(t *testing.T, env *kubetest.Env) client.Client {
	t.Helper()
	c, err := client.New(env.Config, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// bindUser binds the ClusterRole role to user, and the Role of the same name
// in namespace ns when ns is set.
func bindUser(t *testing.T, c client.Client, user, role, ns string) {
	t.Helper()
	ctx := context.Background()
	subjects := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	if err := c.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role + "-test"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   subjects,
	}); err != nil {
		t.Fatal(err)
	}
	if ns == "" {
		return
	}
	if err := c.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role + "-test", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role},
		Subjects:   subjects,
	}); err != nil {
		t.Fatal(err)
	}
}

// probe is where a component under test serves its health checks: each runs
// in a namespace of its own, where the port is free.
const probe = "127.0.0.1:8081"

// componentNS makes a namespace for a Berth component the test runs, with
// the test's API server answering there at its host address. A component in
// the host's namespace would change the host: berth-agent left its nftables
// tables there when killed.
func componentNS(t *testing.T, env *kubetest.Env) *netns.Namespace {
	t.Helper()
	addr := env.Config.Host
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		addr = u.Host
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		t.Fatalf("API server address %q: want host:port or https://host:port: %v", env.Config.Host, err)
	}
	ns := netnstest.New(t)
	netnstest.Forward(t, ns, addr)
	return ns
}

func httpGet(c *http.Client, addr, path string) (string, int, error) {
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode, nil
}

func httpOK(c *http.Client, addr, path string) error {
	body, code, err := httpGet(c, addr, path)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("%s: %d %s", path, code, body)
	}
	return nil
}

// waitUntil polls cond until it returns nil or the deadline passes.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
