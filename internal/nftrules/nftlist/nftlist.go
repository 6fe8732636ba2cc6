// Package nftlist reads a table back from the kernel with nft, for the
// kernel tests of the proxy, NetworkPolicy and nftrules itself: they check
// that nft lists every rule with the very text the ruleset holds, which is
// how the netlink compiler and nft are kept in agreement. Only tests use
// it (the agent runs no nft).
package nftlist

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/berthnet/berth/lab/netns"
)

// Chains reads `nft list table` output: each chain's rules as nft writes
// them (base chains' type lines left out).
func Chains(listing string) map[string][]string {
	chains := map[string][]string{}
	cur := ""
	for _, line := range strings.Split(listing, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "chain "):
			cur = strings.TrimSuffix(strings.TrimPrefix(line, "chain "), " {")
			chains[cur] = []string{}
		case line == "}":
			cur = ""
		case cur != "" && line != "" && !strings.HasPrefix(line, "type "):
			chains[cur] = append(chains[cur], line)
		}
	}
	return chains
}

// Table lists table (family inet) in ns with nft: every chain's rules,
// and the whole text.
func Table(t testing.TB, ns *netns.Namespace, table string) (map[string][]string, string) {
	t.Helper()
	var out []byte
	if err := ns.Do(func() (err error) {
		out, err = exec.Command("nft", "list", "table", "inet", table).CombinedOutput()
		return err
	}); err != nil {
		t.Fatalf("nft list: %v: %s", err, out)
	}
	return Chains(string(out)), string(out)
}

// ListsAsWritten checks that nft lists every chain of table in ns with
// the very rules of want (a ruleset's chains with its base chains', as
// nftrules.WithBase gives them), and no other chain; it returns the
// listing.
func ListsAsWritten(t testing.TB, ns *netns.Namespace, table string, want map[string][]string) string {
	t.Helper()
	got, text := Table(t, ns, table)
	for name, rules := range want {
		if strings.Join(got[name], "\n") != strings.Join(rules, "\n") {
			t.Errorf("chain %s lists as\n  %s\nwant\n  %s", name, strings.Join(got[name], "\n  "), strings.Join(rules, "\n  "))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("stale chain %s", name)
		}
	}
	return text
}
