package proxy

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/berthnet/berth/test/netnstest"
)

// An uninstall takes the proxy's table away, and only it: another table
// stays, and a second removal finds nothing and is no error.
func TestRemoveRules(t *testing.T) {
	ns := netnstest.New(t)
	ctx := context.Background()
	if err := ns.Do(func() error { return exec.Command("nft", "add", "table", "inet", "not-berth").Run() }); err != nil {
		t.Fatal(err)
	}
	var be *Netlink
	if err := ns.Do(func() (err error) {
		be, err = NewNetlink()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	if err := NewSyncer(be, nil).Sync(ctx, kernelState()); err != nil {
		t.Fatal(err)
	}
	if got := netnstest.NftTables(t, ns); !strings.Contains(got, "table inet berth-proxy\n") {
		t.Fatalf("before: no table inet berth-proxy in\n%s", got)
	}
	for i, want := range []bool{true, false} {
		var removed bool
		if err := ns.Do(func() (err error) {
			removed, err = RemoveRules(ctx)
			return err
		}); err != nil {
			t.Fatalf("removal %d: %v", i+1, err)
		}
		if removed != want {
			t.Errorf("removal %d reported removed=%v, want %v", i+1, removed, want)
		}
		if got := netnstest.NftTables(t, ns); got != "table inet not-berth\n" {
			t.Errorf("after removal %d, tables are\n%s\nwant only table inet not-berth", i+1, got)
		}
	}
}
