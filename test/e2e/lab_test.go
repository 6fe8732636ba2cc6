// Package e2e drives the lab end to end: berthctl as a person runs it, the
// real control plane, and the kernel's namespaces.
package e2e

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthnet/berth/test/labtest"
	"github.com/berthnet/berth/test/netnstest"
)

// lab up gives three Ready nodes with podCIDRs, status says healthy, a second
// up is refused, the external client reaches the LAN through the router, and
// down leaves nothing behind (checked by the cleanup Up registers).
func TestLabUpStatusDown(t *testing.T) {
	t.Parallel()
	l, ctx := labtest.Start(t, 2*time.Minute)

	out, err := l.Kubectl(ctx, "get", "nodes", "-o", "wide", "--no-headers")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("kubectl get nodes: want 3 nodes, got:\n%s", out)
	}
	for i, line := range lines {
		f := strings.Fields(line)
		wantIP := l.LAN.Addr().As4()
		wantIP[3] = byte(11 + i)
		if len(f) < 6 || f[1] != "Ready" || f[5] != net.IP(wantIP[:]).String() {
			t.Errorf("node line %q: want Ready with INTERNAL-IP %v", line, net.IP(wantIP[:]))
		}
	}
	cidrs, err := l.Kubectl(ctx, "get", "nodes", "-o", "jsonpath={range .items[*]}{.spec.podCIDR}{\"\\n\"}{end}")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range strings.Fields(cidrs) {
		_, _, err := net.ParseCIDR(c)
		if err != nil || !strings.HasPrefix(c, "10.244.") || !strings.HasSuffix(c, "/24") || seen[c] {
			t.Errorf("podCIDR %q: want a distinct /24 in 10.244.0.0/16 (%v)", c, err)
		}
		seen[c] = true
	}
	if len(seen) != 3 {
		t.Errorf("want 3 podCIDRs, got %q", cidrs)
	}

	status, err := l.Berthctl(ctx, "lab", "status", "--name", l.Name)
	if err != nil {
		t.Fatalf("lab status: %v\n%s", err, status)
	}
	for _, c := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "bird"} {
		if !lineHas(status, c, "healthy") {
			t.Errorf("lab status does not show %s healthy:\n%s", c, status)
		}
	}

	again, err := l.Berthctl(ctx, l.UpArgs(t)...)
	if err == nil || !strings.Contains(again, "already up") {
		t.Errorf("second lab up: err=%v, want a refusal saying the lab is already up:\n%s", err, again)
	}
	if _, err := l.Kubectl(ctx, "get", "nodes"); err != nil {
		t.Errorf("the refused second up broke the running lab: %v", err)
	}

	// The external client reaches the LAN client through the router.
	client := l.Namespace(t, "client")
	external := l.Namespace(t, "external")
	lanClient := l.LAN.Addr().As4()
	lanClient[3] = 253
	addr := net.JoinHostPort(net.IP(lanClient[:]).String(), "8080")
	peer := netnstest.Connect(t, client, external, addr)
	if !strings.HasPrefix(peer, "203.0.113.2:") {
		t.Errorf("LAN client saw the connection from %q, want the external client 203.0.113.2 (routed, not NATed)", peer)
	}
}

// A lab up killed half-way, once its real nodes run (containerd, the
// kubelet and their pods), leaves processes, namespaces and the nodes'
// state; a new up is refused, and down removes it all.
func TestLabDownAfterCrashedUp(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	l := labtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	args := l.UpArgs(t)
	cmd := exec.CommandContext(ctx, l.Bin.Berthctl, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	crashed := false
	for sc.Scan() {
		// Printed once containerd and the kubelet run on every node, as
		// helm starts to install Berth.
		if strings.Contains(sc.Text(), "Berth: helm install") {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			crashed = true
			break
		}
	}
	_ = cmd.Wait()
	if !crashed {
		t.Fatal("lab up never reached the real nodes' step")
	}
	if len(l.Leftovers()) == 0 {
		t.Fatal("the killed lab up left nothing: the crash happened too early to test down")
	}

	refused, err := l.Berthctl(ctx, l.UpArgs(t)...)
	if err == nil || !strings.Contains(refused, "lab down") {
		t.Errorf("up over a crashed lab: err=%v, want a refusal that says to run lab down:\n%s", err, refused)
	}

	if out, err := l.Berthctl(ctx, "lab", "down", "--name", l.Name); err != nil {
		t.Fatalf("lab down: %v\n%s", err, out)
	}
	if left := l.Leftovers(); len(left) > 0 {
		t.Fatalf("lab down after a crash left: %v", left)
	}
}

// lab up as an ordinary user fails at once and says why.
func TestLabUpNeedsRoot(t *testing.T) {
	t.Parallel()
	bin := labtest.Build(t)
	cmd := exec.Command(bin.Berthctl, "lab", "up", "--name", "tnoroot")
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("lab up as nobody succeeded:\n%s", out)
	}
	if !strings.Contains(string(out), "must run as root") {
		t.Fatalf("lab up as nobody: want a message saying it must run as root, got:\n%s", out)
	}
}

func lineHas(text, first, want string) bool {
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == first && strings.Contains(line, want) {
			return true
		}
	}
	return false
}
