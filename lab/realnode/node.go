// Package realnode runs a real Kubernetes node for the lab: containerd (with
// runc) and the kubelet, inside the node's network namespace and a mount
// namespace of its own, so that the node's standard paths (/etc/cni/net.d,
// /opt/cni/bin, /var/lib/kubelet, /var/lib/containerd, /run/containerd,
// /var/log/pods) are its own. Stop leaves no process, mount or cgroup behind.
// See docs/lab.md.
package realnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berthnet/berth/lab/logtail"
	"github.com/berthnet/berth/lab/netns"
)

// Node is a running lab node.
type Node struct {
	Config
	containerd *exec.Cmd
	kubelet    *exec.Cmd
	exited     map[*exec.Cmd]chan struct{}
	names      map[*exec.Cmd]string
}

// Start lays out the node's folders, makes its mount namespace and cgroupRoot,
// starts containerd and waits for its socket. The kubelet starts with
// StartKubelet, once the images the node needs are imported.
func Start(ctx context.Context, c Config) (*Node, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	for _, b := range []string{"kubelet", "containerd", "containerd-shim-runc-v2", "ctr", "runc"} {
		if _, err := os.Stat(filepath.Join(c.BinDir, b)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run `make test-deps`", b, c.BinDir)
		}
	}
	if _, err := os.Stat(filepath.Join(netns.Dir, c.Netns)); err != nil {
		return nil, fmt.Errorf("node %s: network namespace: %w", c.Name, err)
	}
	n := &Node{Config: c, exited: map[*exec.Cmd]chan struct{}{}, names: map[*exec.Cmd]string{}}
	if err := c.writeFiles(); err != nil {
		return nil, err
	}
	if err := c.save(); err != nil {
		return nil, err
	}
	err := c.makeMountNamespace()
	if err == nil {
		err = c.makeCgroupRoot()
	}
	if err == nil {
		n.containerd, err = n.start("containerd", filepath.Join(c.BinDir, "containerd"), "--config", filepath.Join(c.Dir, "containerd.toml"))
	}
	if err == nil {
		err = n.waitFor(ctx, n.containerd, time.Minute, func(ctx context.Context) error {
			return n.ctr(ctx, "version")
		})
	}
	if err != nil {
		return nil, errors.Join(err, n.Stop())
	}
	return n, nil
}

// StartKubelet starts the kubelet and waits until it answers on its healthz
// port at the node's address.
func (n *Node) StartKubelet(ctx context.Context) error {
	if err := n.holdTunables(); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	nodeIP := n.Address.String()
	if n.Address6.IsValid() {
		nodeIP += "," + n.Address6.String()
	}
	args := []string{
		"--config", filepath.Join(n.Dir, "kubelet.yaml"),
		"--kubeconfig", n.Kubeconfig,
		"--node-ip", nodeIP,
		"--hostname-override", n.Name,
		"--v", "2",
	}
	if len(n.Labels) > 0 {
		var l []string
		for k, v := range n.Labels {
			l = append(l, k+"="+v)
		}
		sort.Strings(l)
		args = append(args, "--node-labels", strings.Join(l, ","))
	}
	var err error
	n.kubelet, err = n.start("kubelet", filepath.Join(n.BinDir, "kubelet"), args...)
	if err != nil {
		return errors.Join(err, n.releaseTunables())
	}
	url := "http://" + net.JoinHostPort(n.Address.String(), "10248") + "/healthz"
	return n.waitFor(ctx, n.kubelet, 2*time.Minute, func(ctx context.Context) error {
		return n.inNetns(func() error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s", url, resp.Status)
			}
			return nil
		})
	})
}

// ImportImage imports an image tarball (OCI layout or docker-archive) into the
// node's containerd, in the namespace the CRI uses, so pods run it unpulled.
func (n *Node) ImportImage(ctx context.Context, tarball string) error {
	return n.ctr(ctx, "images", "import", tarball)
}

// ctr runs ctr against the node's containerd.
func (n *Node) ctr(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--mount=" + n.mntns(), "--",
		filepath.Join(n.BinDir, "ctr"), "--address", n.socket(), "--namespace", "k8s.io"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("node %s: ctr %s: %v: %s", n.Name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// start runs a daemon of the node in its network and mount namespaces, in a
// session of its own, with its output in the node's folder.
func (n *Node) start(name, path string, args ...string) (*exec.Cmd, error) {
	logf, err := os.OpenFile(n.logFile(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=" + filepath.Join(netns.Dir, n.Netns), "--mount=" + n.mntns(), "--", path}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = n.Dir
	// containerd finds containerd-shim-runc-v2 on PATH.
	cmd.Env = append(os.Environ(), "PATH="+n.BinDir+":"+os.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("node %s: start %s: %w", n.Name, name, err)
	}
	done := make(chan struct{})
	n.exited[cmd] = done
	n.names[cmd] = name
	go func() { _ = cmd.Wait(); close(done) }()
	return cmd, nil
}

// waitFor polls check until it passes, the process exits or the deadline.
func (n *Node) waitFor(ctx context.Context, cmd *exec.Cmd, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	name := n.names[cmd]
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		err := check(cctx)
		ccancel()
		if err == nil {
			return nil
		}
		select {
		case <-n.exited[cmd]:
			return fmt.Errorf("node %s: %s exited: %v\n%s", n.Name, name, err, logtail.Lines(n.logFile(name), 20))
		case <-ctx.Done():
			return fmt.Errorf("node %s: %s not ready after %s: %v\n%s", n.Name, name, timeout, err, logtail.Lines(n.logFile(name), 20))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// inNetns runs fn with this goroutine's thread in the node's network namespace.
func (n *Node) inNetns(fn func() error) error {
	ns, err := netns.Open(n.Netns)
	if err != nil {
		return err
	}
	defer ns.Close()
	return ns.Do(fn)
}

// Stop ends the kubelet, the pods' processes, containerd and its shims, then
// removes the node's cgroups and releases its mount namespace. The node's
// folder stays, with its logs.
func (n *Node) Stop() error {
	var errs []error
	if n.kubelet != nil {
		errs = append(errs, n.stop(n.kubelet))
	}
	// The pods' processes: whatever is in the node's cgroups.
	if pids := n.cgroupPids(); len(pids) > 0 {
		errs = append(errs, netns.Terminate(pids, 0))
	}
	if n.containerd != nil {
		errs = append(errs, n.stop(n.containerd))
	}
	// The shims and anything else left, the cgroups and mounts.
	errs = append(errs, n.Clean())
	return errors.Join(errs...)
}

func (n *Node) stop(cmd *exec.Cmd) error {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited[cmd]:
		return nil
	case <-time.After(20 * time.Second):
	}
	_ = cmd.Process.Kill()
	select {
	case <-n.exited[cmd]:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("node %s: pid %d did not exit after SIGKILL", n.Name, cmd.Process.Pid)
	}
}

// Pids lists the node's processes left on the host: those in its mount
// namespace or its cgroups. None once the node is stopped.
func (n *Node) Pids() []int {
	return append(n.inMountNamespace(), n.cgroupPids()...)
}

// Mounts lists the host's mounts under the node's folder: none once it is stopped.
func (n *Node) Mounts() ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && (f[4] == n.Dir || strings.HasPrefix(f[4], n.Dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out, nil
}

func pidsWhere(match func(pid string) bool) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if match(e.Name()) {
			pids = append(pids, pid)
		}
	}
	return pids
}
