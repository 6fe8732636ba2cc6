package netnstest

import (
	"os/exec"
	"testing"

	"github.com/berthnet/berth/lab/netns"
)

// NftTables lists the nftables tables of ns, one "table FAMILY NAME" a line,
// as `nft list tables` prints them.
func NftTables(t testing.TB, ns *netns.Namespace) string {
	t.Helper()
	var out []byte
	if err := ns.Do(func() (err error) {
		out, err = exec.Command("nft", "list", "tables").CombinedOutput()
		return err
	}); err != nil {
		t.Fatalf("nft list tables in %s: %v: %s", ns, err, out)
	}
	return string(out)
}
