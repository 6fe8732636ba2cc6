package netns_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/netnstest"
)

// On a fresh machine /run/netns is a plain directory. A namespace the kit
// created there must still be deletable, and its name reusable, after someone
// else runs `ip netns add`: iproute2 then bind-mounts /run/netns over itself,
// and a namespace mounted on the directory underneath could be neither
// deleted ("device or resource busy") nor created again ("already exists").
//
// The test reproduces the fresh machine in a mount namespace of its own, on
// this locked thread only: a fresh tmpfs on /run, so /run/netns does not exist
// yet and nothing it mounts reaches the host.
func TestNamespacesSurviveIPNetnsAdd(t *testing.T) {
	netnstest.RequireRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("this test runs `ip netns add` (Debian package iproute2): %v", err)
	}
	freshRun(t)

	name := netnstest.Prefix() + "shared"
	ipName := netnstest.Prefix() + "ipadd"
	ns, err := netns.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "add", ipName).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", ipName, err, out)
	}
	if err := ns.Delete(); err != nil {
		t.Fatalf("delete after `ip netns add`: %v", err)
	}
	again, err := netns.Create(name)
	if err != nil {
		t.Fatalf("create %s again after deleting it: %v", name, err)
	}
	if err := again.Delete(); err != nil {
		t.Fatalf("delete the recreated namespace: %v", err)
	}
	if out, err := exec.Command("ip", "netns", "delete", ipName).CombinedOutput(); err != nil {
		t.Fatalf("ip netns delete %s: %v\n%s", ipName, err, out)
	}
	entries, err := os.ReadDir(netns.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("%s left in %s", e.Name(), netns.Dir)
	}
}

// freshRun moves the calling goroutine's thread into a mount namespace of its
// own, private from the host's, with an empty tmpfs on /run (Dir's parent;
// /var/run is a symlink to it on Debian). The thread stays locked until the
// test's goroutine ends, so the runtime throws it away and no other goroutine
// ever runs there. Commands started from this goroutine fork from this thread
// and share its mounts.
func freshRun(t *testing.T) {
	t.Helper()
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		t.Fatalf("unshare the mount namespace: %v", err)
	}
	// Only now, in a mount namespace of this thread's own, is it safe to stop
	// mounts propagating: below, nothing can reach the host's namespace.
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
