package realnode

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// makeMountNamespace creates the node's mount namespace and keeps it alive by a
// bind mount of it on c.mntns(), as `unshare --mount=FILE` does. Mounts made on
// the host still reach it (propagation slave); its own mounts (the private
// paths, containerd's overlays and pod network namespaces, the kubelet's
// volumes) never reach the host, and all go when the namespace is released.
func (c Config) makeMountNamespace() error {
	dir := filepath.Dir(c.mntns())
	// A namespace file can only be bind-mounted onto a private mount.
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mount %s on itself: %w", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make %s private: %w", dir, err)
	}
	if err := os.WriteFile(c.mntns(), nil, 0o644); err != nil {
		return err
	}
	if out, err := exec.Command("unshare", "--mount="+c.mntns(), "--propagation", "slave", "true").CombinedOutput(); err != nil {
		return fmt.Errorf("unshare --mount=%s: %v: %s", c.mntns(), err, out)
	}
	for _, p := range privatePaths {
		// The mount point must exist on the host; an empty folder is all
		// that the node leaves there.
		if err := os.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("node %s: mount point %s: %w", c.Name, p, err)
		}
		cmd := exec.Command("nsenter", "--mount="+c.mntns(), "--", "mount", "--bind", c.Private(p), p)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("node %s: bind-mount %s on %s: %v: %s", c.Name, c.Private(p), p, err, out)
		}
	}
	return nil
}

// releaseMountNamespace drops the bind mounts that keep the namespace alive;
// once its processes are gone the kernel frees it with every mount inside.
func (c Config) releaseMountNamespace() error {
	dir := filepath.Dir(c.mntns())
	var errs []error
	for _, p := range []string{c.mntns(), dir} {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// inMountNamespace lists the processes whose mount namespace is the node's.
func (c Config) inMountNamespace() []int {
	var want unix.Stat_t
	if err := unix.Stat(c.mntns(), &want); err != nil {
		return nil
	}
	return pidsWhere(func(pid string) bool {
		var st unix.Stat_t
		return unix.Stat(filepath.Join("/proc", pid, "ns", "mnt"), &st) == nil && st.Dev == want.Dev && st.Ino == want.Ino
	})
}
