package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// shareDir makes Dir a mount point shared with itself, as iproute2 does before
// every `ip netns add` (ip/ipnetns.c, netns_add). A namespace must be mounted
// inside that mount, never on the plain directory: the first `ip netns add` on
// a machine where Dir is not yet a mount point bind-mounts Dir over itself,
// and a namespace mounted on the directory underneath is then hidden, so it
// can be neither deleted (EBUSY) nor created again (the name exists).
//
// An flock on the directory keeps two Berth processes from both finding Dir
// unmounted and stacking two bind mounts.
func shareDir() error {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", Dir, err)
	}
	dir, err := os.Open(Dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", Dir, err)
	}
	defer dir.Close()
	if err := unix.Flock(int(dir.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", Dir, err)
	}
	madeMount := false
	for {
		err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, "")
		if err == nil {
			return nil
		}
		// EINVAL: Dir is not a mount point yet; make it one, then share it.
		if !errors.Is(err, unix.EINVAL) || madeMount {
			return fmt.Errorf("make %s a shared mount (mount --make-rshared %s): %w", Dir, Dir, err)
		}
		if err := unix.Mount(Dir, Dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mount %s on itself (mount --rbind %s %s): %w", Dir, Dir, Dir, err)
		}
		madeMount = true
	}
}

// createNamed makes a new network namespace and mounts it at Dir/name, the
// way `ip netns add` does. It runs unshare on a locked thread, then puts that
// thread back in the namespace it came from; if that fails the thread stays
// locked, so the Go runtime throws it away instead of reusing it in the wrong
// namespace.
func createNamed(name string) (netns.NsHandle, error) {
	if err := shareDir(); err != nil {
		return netns.None(), err
	}
	path := filepath.Join(Dir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0)
	if errors.Is(err, os.ErrExist) {
		return netns.None(), fmt.Errorf("%s: %w", path, os.ErrExist)
	}
	if err != nil {
		return netns.None(), fmt.Errorf("create %s: %w", path, err)
	}
	f.Close()
	fd, err := unshareAndMount(path)
	if err != nil {
		_ = os.Remove(path)
		return netns.None(), err
	}
	return fd, nil
}

func unshareAndMount(path string) (netns.NsHandle, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return netns.None(), fmt.Errorf("open the current network namespace: %w", err)
	}
	defer orig.Close()
	fd, err := netns.New()
	if err != nil {
		err = fmt.Errorf("unshare a network namespace: %w", err)
	} else {
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if merr := unix.Mount(self, path, "none", unix.MS_BIND, ""); merr != nil {
			fd.Close()
			fd, err = netns.None(), fmt.Errorf("bind-mount the new namespace on %s: %w", path, merr)
		}
	}
	if serr := netns.Set(orig); serr != nil {
		if fd.IsOpen() {
			fd.Close()
		}
		// The thread stays locked: the runtime retires it.
		return netns.None(), errors.Join(err, fmt.Errorf("return to the original network namespace: %w", serr))
	}
	runtime.UnlockOSThread()
	return fd, err
}

// deleteNamed unmounts Dir/name and removes the file, as `ip netns delete`
// does. A file with nothing mounted on it (a create that failed half-way) is
// removed too.
func deleteNamed(name string) error {
	path := filepath.Join(Dir, name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	err := os.Remove(path)
	if errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("%w: the name is still mounted beneath a later mount of %s over itself "+
			"(`ip netns add` on a machine where %s was not yet a mount point, with a Berth older than this fix); "+
			"it stays until the machine restarts", err, Dir, Dir)
	}
	return err
}
