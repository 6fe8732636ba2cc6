// Package netnstest gives privileged tests throwaway network namespaces that
// are always removed: by t.Cleanup, and by a sweep of those left by test
// processes that died before their cleanup ran.
package netnstest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/berthnet/berth/lab/netns"
)

// prefix starts every namespace name a test makes; the creating process's pid
// follows it, so a sweep can tell whose namespaces are orphans.
const prefix = "bt"

var seq atomic.Int64

// RequireRoot skips the test when it cannot create namespaces. CI runs as
// root, so there these tests always run.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces (CI runs as root)")
	}
}

// Prefix is the name prefix of the namespaces this test process makes.
func Prefix() string { return fmt.Sprintf("%s%d-", prefix, os.Getpid()) }

// New creates a namespace named after this process and a sequence number and
// deletes it, with every process inside, when the test ends.
func New(t testing.TB) *netns.Namespace {
	t.Helper()
	RequireRoot(t)
	name := fmt.Sprintf("%s%d", Prefix(), seq.Add(1))
	ns, err := netns.Create(name)
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := ns.Delete(); err != nil {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return ns
}

// SweepStale removes namespaces left by test processes that are gone. Call it
// from TestMain; it never touches the namespaces of a live process.
func SweepStale() error {
	if os.Geteuid() != 0 {
		return nil
	}
	names, err := netns.List(prefix)
	if err != nil {
		return err
	}
	for _, name := range names {
		pidPart, _, ok := strings.Cut(strings.TrimPrefix(name, prefix), "-")
		pid, err := strconv.Atoi(pidPart)
		if !ok || err != nil || netns.Alive(pid) {
			continue
		}
		if err := netns.Remove(name); err != nil {
			return err
		}
	}
	return nil
}

// Main is TestMain for packages with privileged tests: it sweeps the
// namespaces of dead test processes, then runs the tests.
func Main(m *testing.M) {
	if err := SweepStale(); err != nil {
		fmt.Fprintln(os.Stderr, "sweep stale test namespaces:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
