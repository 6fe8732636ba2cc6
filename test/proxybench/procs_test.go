package proxybench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/proxy"
	"github.com/berthnet/berth/test/kubetest"
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
	b.Helper()
	if p := os.Getenv("BERTH_PROXYBENCH_AGENT"); p != "" {
		return p
	}
	root, err := kubetest.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(b.TempDir(), "berth-agent")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./cmd/berth-agent")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build berth-agent: %v\n%s", err, msg)
	}
	return out
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

// proc is a proxy process running in its namespace.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
	err    error
}

// startProxy starts k inside ns and returns it with the time just before
// the start; it is stopped, and its log shown on failure, when b ends.
func startProxy(b *testing.B, ns *netns.Namespace, k proxyKind) (*proc, time.Time) {
	b.Helper()
	logPath := filepath.Join(b.TempDir(), k.name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	// nsenter execs the proxy in place: the pid is the proxy's.
	cmd := ns.Command(context.Background(), k.bin, k.args...)
	cmd.Stdout, cmd.Stderr = f, f
	p := &proc{name: k.name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		f.Close()
		b.Fatalf("start %s: %v", k.name, err)
	}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	b.Cleanup(func() {
		p.stop()
		if b.Failed() {
			b.Logf("%s log, last lines:\n%s", k.name, tail(logPath, 40))
		}
	})
	return p, start
}

// alive fails b when the proxy has exited.
func (p *proc) alive(b *testing.B) {
	b.Helper()
	select {
	case <-p.exited:
		b.Fatalf("%s exited: %v", p.name, p.err)
	default:
	}
}

func (p *proc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// memMiB is a /proc/PID/status figure (VmRSS, VmHWM) in MiB.
func (p *proc) memMiB(b *testing.B, field string) float64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		b.Fatalf("%s memory: %v", p.name, err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field+":" {
			kb, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				b.Fatalf("%s %s: %v", p.name, line, err)
			}
			return kb / 1024
		}
	}
	b.Fatalf("%s: no %s in /proc/%d/status", p.name, field, p.cmd.Process.Pid)
	return 0
}

func tail(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
