package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/berthnet/berth/lab/netns"
)

// RequireRoot explains why the lab needs root.
func RequireRoot(verb string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("berthctl lab %s must run as root: it creates network namespaces and starts the control plane (try: sudo berthctl lab %s)", verb, verb)
	}
	return nil
}

// Up builds the lab: topology, PKI, control plane, router, nodes. It refuses
// to run over a lab of the same name, up or half torn down. If a step fails,
// it tears down what it made and returns the step's error.
func Up(ctx context.Context, cfg Config, self string, out io.Writer) (err error) {
	if err := RequireRoot("up"); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := cfg.checkBinaries(); err != nil {
		return err
	}
	bird, birdc, err := findBird()
	if err != nil {
		return err
	}
	if _, err := os.Stat(cfg.StateDir); err == nil {
		if st, lerr := LoadState(cfg.StateDir); lerr == nil && anyAlive(st) {
			return fmt.Errorf("lab %q is already up (state in %s); use `berthctl lab status --name %s`, or `berthctl lab down --name %s` first", cfg.Name, cfg.StateDir, cfg.Name, cfg.Name)
		}
		return fmt.Errorf("lab %q has leftovers from an earlier run in %s; run `berthctl lab down --name %s` first", cfg.Name, cfg.StateDir, cfg.Name)
	}
	if left, _ := netns.List(cfg.Prefix()); len(left) > 0 {
		return fmt.Errorf("network namespaces %v of lab %q are left from an earlier run; run `berthctl lab down --name %s` first", left, cfg.Name, cfg.Name)
	}
	images, err := cfg.checkRealNodes()
	if err != nil {
		return err
	}

	for _, d := range []string{cfg.StateDir, cfg.logDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	defer func() {
		if err != nil {
			fmt.Fprintf(out, "lab up failed; tearing down what it made\n")
			if derr := Down(cfg.Name, cfg.StateDir, io.Discard); derr != nil {
				err = errors.Join(err, fmt.Errorf("tear down: %w", derr))
			}
		}
	}()

	st := &State{Config: cfg}
	if st.Ports, err = pickPorts(cfg); err != nil {
		return err
	}
	if err := st.save(); err != nil {
		return err
	}

	step(out, "network: %d nodes on %v, router, LAN client, external client on %v", cfg.Nodes, cfg.LAN, cfg.Upstream)
	if err := cfg.buildTopology(); err != nil {
		return err
	}
	step(out, "certificates and kubeconfigs in %s", cfg.StateDir)
	if err := cfg.writePKI(st.Ports); err != nil {
		return err
	}
	checks, err := cfg.healthChecks(st.Ports)
	if err != nil {
		return err
	}

	for _, spec := range []procSpec{
		cfg.etcdSpec(st.Ports),
		cfg.apiServerSpec(st.Ports),
		cfg.controllerManagerSpec(st.Ports),
		cfg.schedulerSpec(st.Ports),
	} {
		step(out, "%s", spec.name)
		p, err := st.start(spec)
		if err != nil {
			return err
		}
		if err := waitFor(ctx, p, 2*time.Minute, checks[spec.name]); err != nil {
			return err
		}
	}

	step(out, "router: BIRD in %s", cfg.RouterNamespace())
	if err := cfg.writeBirdConfig(); err != nil {
		return err
	}
	p, err := st.start(cfg.birdSpec(bird))
	if err != nil {
		return err
	}
	if err := waitFor(ctx, p, 30*time.Second, func(ctx context.Context) error { return cfg.birdStatus(ctx, birdc) }); err != nil {
		return err
	}

	if err := st.upRealNodes(ctx, self, images, out); err != nil {
		return err
	}
	fmt.Fprintf(out, "lab %q is up. kubeconfig: %s\n", cfg.Name, cfg.AdminKubeconfig())
	return nil
}

func step(out io.Writer, format string, args ...any) {
	fmt.Fprintf(out, "• "+format+"\n", args...)
}

// start starts a process and records it in the state before anything else
// can fail, so `down` always knows about it.
func (s *State) start(spec procSpec) (Process, error) {
	p, err := s.Config.startProcess(spec)
	if err != nil {
		return p, err
	}
	s.Processes = append(s.Processes, p)
	return p, s.save()
}

// pickPorts gives the lab's loopback components ports derived from its
// LAN, which no other lab on the machine shares (up refuses an overlapping
// LAN): labs started at the same moment cannot race for a port. A port some
// other program holds makes that component fail to start, with its log.
func pickPorts(cfg Config) (Ports, error) {
	a := cfg.LAN.Masked().Addr().As4()
	slot := (int(a[1])*256 + int(a[2])) % 1024
	base := 20000 + 8*slot
	for port := base; port < base+4; port++ {
		if err := portFree(port); err != nil {
			return Ports{}, fmt.Errorf("lab port %d (derived from LAN %v): %w; choose another --lan", port, cfg.LAN, err)
		}
	}
	// The API server has the host's LAN address to itself: the usual port.
	return Ports{Etcd: base, EtcdPeer: base + 1, ControllerManager: base + 2, Scheduler: base + 3, APIServer: 6443}, nil
}

func anyAlive(st *State) bool {
	for _, p := range st.Processes {
		if ours(p.Pid, st.Config.StateDir) {
			return true
		}
	}
	return false
}

// AdminClient is a cluster-admin client for the lab.
func AdminClient(cfg Config) (kubernetes.Interface, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.AdminKubeconfig())
	if err != nil {
		return nil, err
	}
	rc.UserAgent = "berthctl-lab"
	return kubernetes.NewForConfig(rc)
}

// waitNodes waits until every lab node is Ready and has a podCIDR.
func waitNodes(ctx context.Context, client kubernetes.Interface, cfg Config, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		missing := []string{}
		if err == nil {
			byName := map[string]corev1.Node{}
			for _, n := range nodes.Items {
				byName[n.Name] = n
			}
			for i := 1; i <= cfg.Nodes; i++ {
				n, ok := byName[cfg.NodeName(i)]
				if !ok || !NodeReady(&n) || n.Spec.PodCIDR == "" {
					missing = append(missing, cfg.NodeName(i))
				}
			}
			if len(missing) == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("nodes not ready after %s: %w", timeout, err)
			}
			return fmt.Errorf("nodes %v not Ready with a podCIDR after %s; see %s", missing, timeout, filepath.Join(cfg.StateDir, "nodes", "*", "real", "kubelet.log"))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// NodeReady reports whether a Node's Ready condition is True.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Down removes every process, namespace, link and file of the lab named name,
// whose state folder is stateDir, even when `up` crashed half-way or the state
// file is gone. It lists what it removed.
func Down(name, stateDir string, out io.Writer) error {
	if err := RequireRoot("down"); err != nil {
		return err
	}
	cfg := Default()
	cfg.Name = name
	cfg.StateDir = stateDir
	if st, err := LoadState(stateDir); err == nil {
		cfg = st.Config
		// Stop in the reverse order of start: clients before the API server,
		// the API server before etcd, so each shuts down cleanly and fast.
		for i := len(st.Processes) - 1; i >= 0; i-- {
			p := st.Processes[i]
			if !ours(p.Pid, stateDir) {
				continue
			}
			if err := netns.Terminate([]int{p.Pid}, 10*time.Second); err != nil {
				return fmt.Errorf("stop %s: %w", p.Name, err)
			}
			fmt.Fprintf(out, "stopped %s (pid %d)\n", p.Name, p.Pid)
		}
	}
	if !nameRE.MatchString(cfg.Name) {
		return fmt.Errorf("lab name %q is not a lab name", cfg.Name)
	}
	if pids := strays(stateDir); len(pids) > 0 {
		if err := netns.Terminate(pids, 10*time.Second); err != nil {
			return err
		}
		fmt.Fprintf(out, "stopped stray processes %v\n", pids)
	}
	// A node that cannot be cleaned keeps its folder, but the rest goes.
	cleaned, cleanErr := cfg.cleanRealNodes()
	for _, c := range cleaned {
		fmt.Fprintf(out, "cleaned %s\n", c)
	}
	removed, err := cfg.removeTopology()
	for _, r := range removed {
		fmt.Fprintf(out, "removed %s\n", r)
	}
	if err != nil {
		return err
	}
	if cleanErr != nil {
		return cleanErr
	}
	if _, err := os.Stat(stateDir); err == nil {
		if err := os.RemoveAll(stateDir); err != nil {
			return err
		}
		fmt.Fprintf(out, "removed %s\n", stateDir)
	}
	return nil
}
