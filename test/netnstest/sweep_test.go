package netnstest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berthnet/berth/lab/netns"
)

// A namespace the sweep cannot remove is reported once and does not stop the
// tests, and New passes over a name that is taken. The stuck namespace is made
// the way it happened on a fresh machine: mounted straight onto a plain
// /run/netns (by `unshare --net=FILE`, as the kit did before it shared the
// directory), then hidden by `ip netns add` mounting /run/netns over itself.
func TestSweepReportsStuckNamespaceOnceAndGoesOn(t *testing.T) {
	FreshRun(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadPid := dead.Process.Pid
	stuck := fmt.Sprintf("bt%d-1", deadPid)
	removable := fmt.Sprintf("bt%d-2", deadPid)
	nextOwn := fmt.Sprintf("%s%d", Prefix(), seq.Load()+1)
	ipName := Prefix() + "ipadd"

	if err := os.MkdirAll(netns.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{stuck, nextOwn} {
		path := filepath.Join(netns.Dir, name)
		if err := os.WriteFile(path, nil, 0o444); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("unshare", "--net="+path, "true").CombinedOutput(); err != nil {
			t.Fatalf("unshare --net=%s: %v\n%s", path, err, out)
		}
	}
	if out, err := exec.Command("ip", "netns", "add", ipName).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", ipName, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", ipName).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v\n%s", ipName, err, out)
		}
	})
	// A stale namespace made after the directory was shared is removed.
	ns, err := netns.Create(removable)
	if err != nil {
		t.Fatal(err)
	}
	_ = ns.Close()

	var first bytes.Buffer
	if err := sweep(&first); err != nil {
		t.Fatalf("sweep with a stuck namespace: %v, want it to go on", err)
	}
	report := first.String()
	if !strings.Contains(report, "cannot remove network namespace "+stuck+",") {
		t.Errorf("first sweep's report does not name %s:\n%s", stuck, report)
	}
	if strings.Contains(report, removable) || strings.Contains(report, nextOwn) {
		t.Errorf("first sweep reported more than %s:\n%s", stuck, report)
	}
	left, err := netns.List(fmt.Sprintf("bt%d-", deadPid))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{stuck}; !slices.Equal(left, want) {
		t.Errorf("namespaces of dead process %d after the sweep: %v, want %v", deadPid, left, want)
	}

	var second bytes.Buffer
	if err := sweep(&second); err != nil {
		t.Fatalf("second sweep: %v", err)
	}
	if second.Len() != 0 {
		t.Errorf("second sweep reported again, want silence:\n%s", second.String())
	}

	fresh := New(t)
	if fresh.Name == nextOwn {
		t.Fatalf("New returned the taken name %s", nextOwn)
	}
	if want := fmt.Sprintf("%s%d", Prefix(), seq.Load()); fresh.Name != want {
		t.Errorf("New made %s, want the next free name %s", fresh.Name, want)
	}
	links, err := fresh.Links()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(links, []string{"lo"}) {
		t.Errorf("links in the fresh namespace: %v, want [lo]", links)
	}
}
