package realnode

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// hierarchies lists the mount points of the host's cgroup hierarchies: the v1
// ones and, on a hybrid host, the unified one, where runc makes the pods'
// cgroups too.
func hierarchies() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		// ... mountpoint(5th) ... " - " fstype source options
		pre, post, ok := strings.Cut(s.Text(), " - ")
		fields := strings.Fields(pre)
		if !ok || len(fields) < 5 || !(strings.HasPrefix(post, "cgroup ") || strings.HasPrefix(post, "cgroup2 ")) {
			continue
		}
		out = append(out, fields[4])
	}
	return out, s.Err()
}

// makeCgroupRoot creates the kubelet's cgroupRoot in every v1 hierarchy (the
// kubelet requires it to exist), with the cpuset of its parent, and the CPU
// weight of a machine (cpuWeight).
func (c Config) makeCgroupRoot() error {
	hs, err := hierarchies()
	if err != nil {
		return err
	}
	if len(hs) == 0 {
		return fmt.Errorf("no cgroup hierarchy mounted (the lab node runs the kubelet with cgroupfs)")
	}
	for _, h := range hs {
		d := filepath.Join(h, c.CgroupRoot())
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("node %s: cgroup %s: %w", c.Name, d, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(h, f)); err == nil {
				if err := os.WriteFile(filepath.Join(d, f), b, 0o644); err != nil {
					return fmt.Errorf("node %s: %s: %w", c.Name, filepath.Join(d, f), err)
				}
			}
		}
		if f, v := cpuWeight(d); f != "" {
			if err := os.WriteFile(f, []byte(v), 0o644); err != nil {
				return fmt.Errorf("node %s: %s: %w", c.Name, f, err)
			}
		}
	}
	return nil
}

// cpuWeight is the file and value that give a node's cgroupRoot in
// hierarchy folder d the CPU weight of a machine: a lab node stands for a
// machine of its own, whose pods (a DaemonSet agent with a small CPU
// request among them) do not compete with the host's other work as one
// process would. Without it the kubepods tree of each node weighs what one
// busy process of the host weighs (a cgroup's default, cpu.shares 1024),
// and a loaded host starves the node's agents for seconds. "" where the
// hierarchy has no CPU controller.
func cpuWeight(d string) (file, value string) {
	if _, err := os.Stat(filepath.Join(d, "cpu.shares")); err == nil { // v1
		return filepath.Join(d, "cpu.shares"), strconv.Itoa(1024 * runtime.NumCPU())
	}
	if _, err := os.Stat(filepath.Join(d, "cpu.weight")); err == nil { // v2: default 100, at most 10000
		return filepath.Join(d, "cpu.weight"), strconv.Itoa(min(100*runtime.NumCPU(), 10000))
	}
	return "", ""
}

// cgroupPids lists the processes in the node's cgroups, in any hierarchy.
func (c Config) cgroupPids() []int {
	return c.pidsIn(func(string) bool { return true })
}

// PodPids lists the processes of the pod with this UID on the node (its
// sandbox's and its containers'), found by the pod's cgroup, which the
// kubelet names pod<UID> under its cgroupRoot.
func (c Config) PodPids(uid string) []int {
	return c.pidsIn(func(p string) bool { return strings.Contains(p, "/pod"+uid+"/") })
}

// pidsIn lists the processes of the node's cgroups whose cgroup.procs path
// matches.
func (c Config) pidsIn(match func(path string) bool) []int {
	hs, _ := hierarchies()
	seen := map[int]bool{}
	var pids []int
	for _, h := range hs {
		_ = filepath.WalkDir(filepath.Join(h, c.CgroupRoot()), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" || !match(p) {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, l := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(l); err == nil && !seen[pid] {
					seen[pid] = true
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids
}

// removeCgroupRoot removes the node's cgroups, deepest first. It fails while a
// process is still in one.
func (c Config) removeCgroupRoot() error {
	hs, err := hierarchies()
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range hs {
		root := filepath.Join(h, c.CgroupRoot())
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dirs[i], err))
			}
		}
	}
	return errors.Join(errs...)
}

// Cgroups lists the node's cgroup folders left on the host: none once the
// node is stopped.
func (c Config) Cgroups() []string {
	hs, _ := hierarchies()
	var out []string
	for _, h := range hs {
		if _, err := os.Stat(filepath.Join(h, c.CgroupRoot())); err == nil {
			out = append(out, filepath.Join(h, c.CgroupRoot()))
		}
	}
	return out
}
