package realnode

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// TestCleanTwice: cleaning a node that is already clean (a lab's `down`
// after each node's runner stopped its own) succeeds and changes nothing,
// even when the record of the host's kernel tunables is gone with the last
// node that stopped.
func TestCleanTwice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: cgroups and mount namespaces")
	}
	if _, err := os.Stat(tunablesFile); err == nil {
		t.Skipf("%s exists: a lab node runs on this machine; this test needs none", tunablesFile)
	}
	c := Config{Name: "clean-twice", Netns: fmt.Sprintf("cleantwice%d", os.Getpid()), Address: netip.MustParseAddr("192.0.2.1"), Dir: filepath.Join(t.TempDir(), "node")}
	for round := 1; round <= 2; round++ {
		if err := c.Clean(); err != nil {
			t.Fatalf("Clean, round %d: %v", round, err)
		}
	}
	if _, err := os.Stat(tunablesFile); !os.IsNotExist(err) {
		t.Fatalf("%s: %v, want none: Clean of a node that never held the tunables wrote them", tunablesFile, err)
	}
}
