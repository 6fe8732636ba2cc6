// Package netnstest gives privileged tests throwaway network namespaces that
// are always removed: by t.Cleanup, and by a sweep of those left by test
// processes that died before their cleanup ran.
package netnstest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

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
// deletes it, with every process inside, when the test ends. A name that is
// taken (a namespace a dead process with this pid left, that the sweep could
// not remove) is passed over for the next one.
func New(t testing.TB) *netns.Namespace {
	t.Helper()
	RequireRoot(t)
	var taken []string
	for len(taken) < maxTaken {
		name := fmt.Sprintf("%s%d", Prefix(), seq.Add(1))
		ns, err := netns.Create(name)
		if errors.Is(err, os.ErrExist) {
			taken = append(taken, name)
			continue
		}
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
	t.Fatalf("create namespace: names %v are all taken; list them with `ls %s`", taken, netns.Dir)
	return nil
}

// maxTaken bounds how many taken names New passes over before it gives up.
const maxTaken = 100

// SweepStale removes namespaces left by test processes that are gone. Call it
// from TestMain; it never touches the namespaces of a live process.
//
// A namespace it cannot remove does not stop the tests: it is reported on
// stderr and left, and New passes over its name. See sweep.
func SweepStale() error { return sweep(os.Stderr) }

// sweep removes the namespaces of dead test processes and reports on w those
// it cannot remove. The report is made once per namespace: a failed removal
// still unmounts the name (deleteNamed's first step), so a later sweep finds
// an unmounted file and knows it was reported. The usual cause is a
// namespace mounted straight onto a plain /run/netns by an older Berth and
// then hidden by `ip netns add`: it stays until the machine restarts.
func sweep(w io.Writer) error {
	if os.Geteuid() != 0 {
		return nil
	}
	names, err := netns.List(prefix)
	if err != nil {
		return fmt.Errorf("list stale test namespaces in %s: %w", netns.Dir, err)
	}
	for _, name := range names {
		pidPart, _, ok := strings.Cut(strings.TrimPrefix(name, prefix), "-")
		pid, err := strconv.Atoi(pidPart)
		if !ok || err != nil || netns.Alive(pid) {
			continue
		}
		mounted := isMounted(name)
		err = netns.Remove(name)
		if err == nil || !mounted {
			continue
		}
		fmt.Fprintf(w, "%s\n"+
			"netnstest: cannot remove network namespace %s, left by test process %d that is gone:\n"+
			"  %v\n"+
			"Tests go on with other names; this one is reported once.\n%s\n", banner, name, pid, err, banner)
	}
	return nil
}

const banner = "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"

// isMounted reports whether something is mounted on the name's file: a
// mount has a device of its own, the plain file has its directory's.
func isMounted(name string) bool {
	var dir, file unix.Stat_t
	if unix.Stat(netns.Dir, &dir) != nil || unix.Stat(filepath.Join(netns.Dir, name), &file) != nil {
		return false
	}
	return dir.Dev != file.Dev
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
