package netnstest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/lab/netns"
)

// FreshRun moves the calling test's thread into a mount namespace of its own,
// private from the host's, with an empty tmpfs on /run (the parent of
// netns.Dir; /var/run links to it on Debian). There /run/netns does not exist
// yet, as on a machine that never had a named network namespace, and nothing
// the test mounts reaches the host.
//
// The thread stays locked until the test's goroutine ends, so the runtime
// throws it away and no other goroutine ever runs there. The test must do its
// namespace work on its own goroutine (cleanups run there too); commands it
// starts fork from this thread and share its mounts.
func FreshRun(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		t.Fatalf("unshare the mount namespace: %v", err)
	}
	// Only now, in a mount namespace of this thread's own, is it safe to stop
	// mounts propagating: from here nothing can reach the host's namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatalf("make the test's mount namespace private: %v", err)
	}
	run := filepath.Dir(netns.Dir)
	if err := unix.Mount("tmpfs", run, "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatalf("mount a fresh tmpfs on %s: %v", run, err)
	}
	if _, err := os.Stat(netns.Dir); !os.IsNotExist(err) {
		t.Fatalf("%s exists on the fresh tmpfs (%v): the test is not isolated", netns.Dir, err)
	}
}
