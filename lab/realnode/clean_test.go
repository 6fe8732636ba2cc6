package realnode

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/berthnet/berth/test/netnstest"
)

// ownTunablesRecord points the record of the host's kernel tunables at a
// file of this test's own, so that nodes of other tests or labs running on
// the machine meanwhile neither see it nor change what it checks.
func ownTunablesRecord(t *testing.T) string {
	t.Helper()
	saved := tunablesFile
	tunablesFile = filepath.Join(t.TempDir(), "kernel-tunables.json")
	t.Cleanup(func() { tunablesFile = saved })
	return tunablesFile
}

// TestReleaseTunablesTwice: releasing the tunables of a node when no record
// is left (the last node that stopped restored the host's values and
// removed it) succeeds and writes nothing. It failed with "remove ...: no
// such file or directory", which made `lab down` after the runners stopped
// their nodes leave the lab's namespaces.
func TestReleaseTunablesTwice(t *testing.T) {
	record := ownTunablesRecord(t)
	c := Config{Name: "release-twice", Dir: filepath.Join(t.TempDir(), "node")}
	for round := 1; round <= 2; round++ {
		if err := c.releaseTunables(); err != nil {
			t.Fatalf("releaseTunables, round %d: %v", round, err)
		}
	}
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Fatalf("%s: %v, want none: a node that never held the tunables wrote a record", record, err)
	}
}

// TestCleanTwice: cleaning a node that is already clean (a lab's `down`
// after each node's runner stopped its own) succeeds and changes nothing:
// no record of the tunables, no cgroup left in any hierarchy.
func TestCleanTwice(t *testing.T) {
	netnstest.RequireRoot(t) // cgroups in every hierarchy, mount namespaces
	record := ownTunablesRecord(t)
	c := Config{Name: "clean-twice", Netns: fmt.Sprintf("cleantwice%d", os.Getpid()), Address: netip.MustParseAddr("192.0.2.1"), Dir: filepath.Join(t.TempDir(), "node")}
	for round := 1; round <= 2; round++ {
		if err := c.Clean(); err != nil {
			t.Fatalf("Clean, round %d: %v", round, err)
		}
	}
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Fatalf("%s: %v, want none: Clean of a node that never held the tunables wrote them", record, err)
	}
	if left := c.Cgroups(); len(left) != 0 {
		t.Fatalf("cgroups left after Clean: %v", left)
	}
}
