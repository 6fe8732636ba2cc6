package netnstest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
)

// isolatedEnv marks the test process MainIsolated started in a network
// namespace of its own.
const isolatedEnv = "BERTH_TEST_OWN_NETNS"

// MainIsolated is TestMain for packages whose code under test runs in the
// test process and uses "its" network namespace: an embedded BGP speaker
// listens and dials from it, so its tests add links and addresses there.
// As root it runs the tests again in a process of their own network
// namespace (loopback up, nothing else), so those links never touch the
// host's; the namespace goes with the process. Not root: as Main (the
// privileged tests skip).
func MainIsolated(m *testing.M) {
	if os.Geteuid() == 0 && os.Getenv(isolatedEnv) == "" {
		os.Exit(runIsolated())
	}
	if os.Getenv(isolatedEnv) != "" {
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "netnstest: loopback up in the tests' own network namespace:", err)
			os.Exit(1)
		}
	}
	Main(m)
}

// runIsolated runs this test binary again, with the same arguments, in a
// new network namespace, and returns its exit code. The child dies with
// this process (a `go test` timeout kills the parent).
func runIsolated() int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "netnstest: find the test binary:", err)
		return 1
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), isolatedEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode()
	case err != nil:
		fmt.Fprintln(os.Stderr, "netnstest: run the tests in a network namespace of their own:", err)
		return 1
	}
	return 0
}
