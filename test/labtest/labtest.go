// Package labtest runs berthctl labs for end-to-end tests, each with its own
// name and LAN so that labs of concurrent tests (and a developer's own lab)
// never collide, and checks that a torn-down lab left nothing behind.
package labtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/berthnet/berth/lab"
	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/kubetest"
	"github.com/berthnet/berth/test/netnstest"
)

// Binaries are Berth's binaries under test and the control plane they run
// against.
type Binaries struct {
	Dir      string // berth-controller, berth-agent, berth-cni, berthctl
	Berthctl string
	K8sDir   string
}

// TestVersion is the version stamped into the binaries Build makes.
const TestVersion = "v0.0.0-e2e"

var (
	buildOnce sync.Once
	built     Binaries
	buildErr  error
)

// Build compiles Berth's binaries once per test process into a folder that any user
// can read (the not-root test runs it as nobody) and finds bin/k8s.
func Build(t testing.TB) Binaries {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "berth-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			buildErr = err
			return
		}
		root, err := kubetest.RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		ldflags := "-X github.com/berthnet/berth/internal/version.version=" + TestVersion
		cmd := exec.Command("go", "build", "-ldflags", ldflags, "-o", dir+"/",
			"./cmd/berth-controller", "./cmd/berth-agent", "./cmd/berth-cni", "./cmd/berthctl")
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, b)
			return
		}
		k8s, err := kubetest.BinDir()
		if err != nil {
			buildErr = err
			return
		}
		built = Binaries{Dir: dir, Berthctl: filepath.Join(dir, "berthctl"), K8sDir: k8s}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// Lab is one lab started for a test.
type Lab struct {
	Name     string
	LAN      netip.Prefix
	StateDir string
	Bin      Binaries
}

// New picks a fresh name and a LAN that the host does not route, so tests and
// a developer's `make run` lab can run side by side. It does not start the lab.
func New(t testing.TB) *Lab {
	t.Helper()
	bin := Build(t)
	name := "t" + randomString(t, 6)
	lan := freeLAN(t)
	return &Lab{Name: name, LAN: lan, StateDir: filepath.Join(lab.StateRoot, name), Bin: bin}
}

// Up starts the lab and registers its teardown, which also checks that
// nothing was left behind.
func (l *Lab) Up(t testing.TB, extra ...string) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			l.logClusterState(t)
			// Keep the components' logs: down removes the state folder.
			if dir, err := os.MkdirTemp("", "berth-lab-logs-"+l.Name+"-"); err == nil {
				if out, err := exec.Command("cp", "-r", filepath.Join(l.StateDir, "logs"), dir).CombinedOutput(); err == nil {
					t.Logf("lab %s logs kept in %s", l.Name, dir)
				} else {
					t.Logf("keeping logs: %v: %s", err, out)
				}
			}
		}
		if out, err := l.Berthctl(context.Background(), "lab", "down", "--name", l.Name); err != nil {
			t.Errorf("lab down: %v\n%s", err, out)
		}
		if left := l.Leftovers(); len(left) > 0 {
			t.Errorf("lab %s left behind: %v", l.Name, left)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if out, err := l.Berthctl(ctx, l.UpArgs(t, extra...)...); err != nil {
		t.Fatalf("lab up: %v\n%s", err, out)
	}
}

// UpArgs are the arguments of berthctl that start this lab with extra
// flags: real nodes with images of the tree under test.
func (l *Lab) UpArgs(t testing.TB, extra ...string) []string {
	t.Helper()
	in := BuildImages(t)
	args := []string{"lab", "up", "--name", l.Name, "--lan", l.LAN.String(), "--k8s-bin-dir", l.Bin.K8sDir,
		"--node-bin-dir", in.NodeBinDir, "--images-dir", in.ImagesDir, "--chart", in.Chart, "--helm", in.Helm}
	return append(args, extra...)
}

// Start opens an end-to-end test: root is required (the test is skipped
// without it), a lab of the test's own is up with extra flags to
// `berthctl lab up` (real nodes, with Berth installed by its chart from
// images of the tree under test), and ctx
// ends after timeout or with the test, whichever comes first. A test that
// runs beside others calls t.Parallel first.
func Start(t *testing.T, timeout time.Duration, extra ...string) (*Lab, context.Context) {
	t.Helper()
	netnstest.RequireRoot(t)
	l := New(t)
	l.Up(t, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return l, ctx
}

// Config is the running lab's config, from its state.
func (l *Lab) Config(t testing.TB) lab.Config {
	t.Helper()
	st, err := lab.LoadState(l.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	return st.Config
}

// Client is a cluster-admin client for the lab.
func (l *Lab) Client(t testing.TB) kubernetes.Interface {
	t.Helper()
	c, err := lab.AdminClient(l.Config(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Demo runs `berthctl lab demo` (every pod and node reaching every echo
// pod, and the Service when the proxy runs) and returns the echo pods, one
// per node.
func (l *Lab) Demo(ctx context.Context, t testing.TB) []corev1.Pod {
	t.Helper()
	if out, err := l.Berthctl(ctx, "lab", "demo", "--name", l.Name); err != nil {
		t.Fatalf("lab demo: %v\n%s", err, out)
	}
	pods, err := lab.WaitEchoPods(ctx, l.Client(t), lab.DemoNamespace, "app=echo", l.Config(t).Nodes, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return pods
}

// Berthctl runs berthctl and returns its combined output.
func (l *Lab) Berthctl(ctx context.Context, args ...string) (string, error) {
	var buf bytes.Buffer
	cmd := exec.CommandContext(ctx, l.Bin.Berthctl, args...)
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	err := cmd.Run()
	return buf.String(), err
}

// Kubectl runs the lab's kubectl against the lab's API server.
func (l *Lab) Kubectl(ctx context.Context, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(l.Bin.K8sDir, "kubectl"),
		append([]string{"--kubeconfig", l.Kubeconfig()}, args...)...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// Kubeconfig is the lab's admin kubeconfig.
func (l *Lab) Kubeconfig() string { return filepath.Join(l.StateDir, "kubeconfig", "admin.yaml") }

// Namespace opens one of the lab's network namespaces by its role suffix
// ("router", "client", "external", "node1", ...).
func (l *Lab) Namespace(t testing.TB, role string) *netns.Namespace {
	t.Helper()
	ns, err := netns.Open(l.Name + "-" + role)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// Leftovers lists whatever of the lab still exists: namespaces, the host
// link, the state folder, processes naming the state folder.
func (l *Lab) Leftovers() []string {
	var left []string
	names, _ := netns.List(l.Name + "-")
	for _, n := range names {
		left = append(left, "netns "+n)
	}
	if _, err := netlink.LinkByName(l.Name + "-host"); err == nil {
		left = append(left, "link "+l.Name+"-host")
	}
	if _, err := os.Stat(l.StateDir); err == nil {
		left = append(left, "folder "+l.StateDir)
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(l.StateDir+"/")) {
			continue
		}
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err == nil && netns.Alive(pid) {
			left = append(left, fmt.Sprintf("process %d %s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		}
	}
	return left
}

func randomString(t testing.TB, n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	for i := range b {
		v, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			t.Fatal(err)
		}
		b[i] = alphabet[v.Int64()]
	}
	return string(b)
}

var lanMu sync.Mutex
var lansTaken = map[netip.Prefix]bool{}

// freeLAN picks a /24 in 198.18.0.0/15 (the benchmarking range, never routed
// on the internet) other than the default lab's, that no host route touches.
func freeLAN(t testing.TB) netip.Prefix {
	t.Helper()
	lanMu.Lock()
	defer lanMu.Unlock()
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		v, err := rand.Int(rand.Reader, big.NewInt(510))
		if err != nil {
			t.Fatal(err)
		}
		n := int(v.Int64()) + 1 // skip 198.18.0.0/24, the default lab's
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18 + byte(n/256), byte(n % 256), 0}), 24)
		if lansTaken[p] || routed(routes, p) {
			continue
		}
		lansTaken[p] = true
		return p
	}
	t.Fatal("no free lab LAN in 198.18.0.0/15")
	return netip.Prefix{}
}

func routed(routes []netlink.Route, p netip.Prefix) bool {
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		a, ok := netip.AddrFromSlice(r.Dst.IP)
		if ok && ones > 0 && netip.PrefixFrom(a.Unmap(), ones).Overlaps(p) {
			return true
		}
	}
	return false
}

// MaxAgentRSS is the largest resident set of the lab's berth-agents, in MiB:
// the processes named berth-agent of the agent pods.
func (l *Lab) MaxAgentRSS(t testing.TB) float64 {
	t.Helper()
	st, err := lab.LoadState(l.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	pods, err := l.Client(t).CoreV1().Pods(lab.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=agent"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		ps, err := lab.PodProcesses(st.Config, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, pid := range ps {
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "berth-agent" {
				pids = append(pids, pid)
			}
		}
	}
	if len(pids) == 0 {
		t.Fatal("no berth-agent process in the lab")
	}
	most := 0.0
	for _, pid := range pids {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				most = max(most, kb/1024)
			}
		}
	}
	return most
}

// FastClient is an admin client without client-side throttling, for
// benchmarks that create many objects (the default 5/s would measure the
// client).
func (l *Lab) FastClient(t testing.TB) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", l.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 500, 500
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// CreateServices creates n LoadBalancer Services named s0000... in ns,
// eight at a time, each with one port and the given annotations.
func CreateServices(ctx context.Context, t testing.TB, c kubernetes.Interface, ns string, n int, annotations map[string]string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s%04d", i), Namespace: ns, Annotations: annotations},
					Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Name: "p", Port: 80}}}}
				if _, err := c.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
