package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
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

	"github.com/berthnet/berth/test/kubetest"
	"github.com/berthnet/berth/test/labtest"
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
	run := func(command string) ([]byte, error) {
		cmd := exec.Command(filepath.Join(bin.Dir, "berth-cni"))
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

	probe := freeAddr(t)
	cmd := exec.Command(filepath.Join(bin.Dir, "berth-controller"),
		"--kubeconfig", kubeconfig,
		"--leader-election-namespace", ns,
		"--metrics-bind-address", freeAddr(t),
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

	waitUntil(t, time.Minute, "controller ready", func() error { return httpOK(probe, "/readyz") })
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
// Node, and stays unready, saying why, when its Node does not exist.
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
	if err := admin.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}); err != nil {
		t.Fatal(err)
	}

	start := func(node string) string {
		probe := freeAddr(t)
		cmd := exec.Command(filepath.Join(bin.Dir, "berth-agent"),
			"--kubeconfig", kubeconfig, "--node-name", node, "--pod-network=false",
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
		return probe
	}
	good := start("n1")
	missing := start("n2")
	waitUntil(t, time.Minute, "agent on n1 ready", func() error { return httpOK(good, "/readyz") })
	waitUntil(t, time.Minute, "agent on n2 explains it has no node", func() error {
		body, code, err := httpGet(missing, "/readyz?verbose")
		if err != nil {
			return err
		}
		if code == http.StatusOK || !strings.Contains(body, "node") {
			return fmt.Errorf("readyz %d: %s", code, body)
		}
		return nil
	})
	if err := httpOK(missing, "/readyz"); err == nil {
		t.Error("agent without a Node reports ready")
	}
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

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func httpGet(addr, path string) (string, int, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode, nil
}

func httpOK(addr, path string) error {
	body, code, err := httpGet(addr, path)
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
