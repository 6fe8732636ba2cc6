package nftrules

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/berthnet/berth/internal/nftrules/nftlist"
	"github.com/berthnet/berth/test/netnstest"
)

func TestMain(m *testing.M) { netnstest.Main(m) }

// vocabulary uses every rule form the compiler knows, in the text nft
// lists back, with every kind of set, map and element.
func vocabulary() Ruleset {
	rs := table()
	rs.Base = append(rs.Base,
		BaseChain{Name: "fwd", Type: "filter", Hook: "forward", Priority: "filter", Rules: []string{
			"ct state established,related accept",
			"icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept",
			`iifname "lo" accept`,
			`oifname "berth0" jump pods`,
			"ip6 saddr @nodes6 accept",
		}},
		BaseChain{Name: "pre", Type: "nat", Hook: "prerouting", Priority: "dstnat", Rules: []string{
			"ip daddr . meta l4proto . th dport vmap @services",
			"fib daddr type local ip daddr @nodes meta l4proto . th dport vmap @nodeports",
		}},
		BaseChain{Name: "post", Type: "nat", Hook: "postrouting", Priority: "srcnat", Rules: []string{
			`ip saddr @pods ip daddr != @cluster masquerade comment "pod traffic leaving the cluster"`,
			"ip saddr . ip daddr @hairpin jump mark",
			"meta mark & 0x00004000 == 0x00000000 return",
			"meta mark set meta mark ^ 0x00004000",
			"masquerade fully-random",
		}},
		BaseChain{Name: "reject", Type: "filter", Hook: "output", Priority: "-110", Rules: []string{"meta nfproto ipv4 reject"}},
	)
	rs.Chains["pod-a"] = append([]string{
		"tcp dport 8000-8080 return",
		"udp dport 53 return",
		"meta l4proto sctp return",
		"ip daddr . meta l4proto . th dport @named return",
		"ip6 saddr @peers6 tcp dport 80 return",
	}, rs.Chains["pod-a"]...)
	rs.Chains["mark"] = []string{"meta mark set meta mark | 0x00004000"}
	rs.Chains["svc"] = []string{
		"ip saddr @affinity goto ep",
		"numgen random mod 2 0 goto ep",
		"meta l4proto tcp dnat ip to numgen random mod 2 offset 10 map @endpoints",
	}
	rs.Chains["ep"] = []string{
		"update @affinity { ip saddr }",
		"meta l4proto tcp dnat ip to 10.244.1.7:8080",
		"meta l4proto tcp dnat ip6 to [fd00::7]:8080",
	}
	rs.Maps["services"] = Map{Type: "ipv4_addr . inet_proto . inet_service : verdict", Elements: map[string]string{"10.96.0.10 . tcp . 80": "goto svc"}}
	rs.Maps["nodeports"] = Map{Type: "inet_proto . inet_service : verdict", Elements: map[string]string{"tcp . 30080": "goto svc"}}
	rs.Maps["endpoints"] = Map{Type: "integer : ipv4_addr . inet_service", Elements: map[string]string{"10": "10.244.1.7 . 8080", "11": "10.244.2.9 . 8080"}}
	rs.Sets["nodes"] = Set{Type: "ipv4_addr", Interval: true, Elements: []string{"0.0.0.0/0"}}
	rs.Sets["nodes6"] = Set{Type: "ipv6_addr", Elements: []string{"fd00::1"}}
	rs.Sets["peers6"] = Set{Type: "ipv6_addr", Interval: true, Elements: []string{"fd00::/64", "fd01::5-fd01::9"}}
	rs.Sets["pods"] = Set{Type: "ipv4_addr", Interval: true, Elements: []string{"10.244.1.0/24"}}
	rs.Sets["cluster"] = Set{Type: "ipv4_addr", Interval: true, Elements: []string{"10.244.0.0/16"}}
	rs.Sets["hairpin"] = Set{Type: "ipv4_addr . ipv4_addr", Elements: []string{"10.244.1.7 . 10.244.1.7"}}
	rs.Sets["named"] = Set{Type: "ipv4_addr . inet_proto . inet_service", Elements: []string{"10.244.1.7 . tcp . 8080"}}
	rs.Sets["affinity"] = Set{Type: "ipv4_addr", TimeoutSeconds: 600}
	return rs
}

// The kernel takes every rule form through netlink, and nft lists each
// back as written; a diff and a rebuild over the table apply too.
func TestKernelVocabulary(t *testing.T) {
	ns := netnstest.New(t)
	var be *Netlink
	if err := ns.Do(func() (err error) {
		be, err = NewNetlink("berth-test")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	ctx := context.Background()
	sync := func(prev *Ruleset, next Ruleset) string {
		t.Helper()
		tx := NewTx("berth-test")
		Sync(tx, prev, next)
		if err := be.Apply(ctx, tx); err != nil {
			t.Fatalf("apply: %v\n%s", err, tx)
		}
		return nftlist.ListsAsWritten(t, ns, "berth-test", WithBase(next).Chains)
	}
	rs := vocabulary()
	text := sync(nil, rs)
	for _, want := range []string{
		"10.9.0.0/16", "10.10.0.1-10.10.0.9", "tcp . 80-90", "udp . 53", "fd01::5-fd01::9", "fd00::/64",
		`counter dropped {`, "10.244.1.7 . tcp . 8080", "timeout 10m", "10.0.0.1 : goto pod-a",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	next := vocabulary()
	next.Sets["ports"] = Set{Type: "inet_proto . inet_service", Interval: true, Elements: []string{"sctp . 9", "tcp . 80-90"}}
	next.Sets["blocked"] = Set{Type: "ipv4_addr", Interval: true, Elements: []string{"10.10.0.1-10.10.0.9"}}
	next.Chains["pod-a"] = next.Chains["pod-a"][1:]
	next.Counters = append(next.Counters, "more")
	next.Chains["pods"] = append(next.Chains["pods"], `counter name "more" drop`)
	text = sync(&rs, next)
	if strings.Contains(text, "10.9.0.0/16") || strings.Contains(text, "udp . 53") || !strings.Contains(text, "sctp . 9") {
		t.Errorf("the diff left the old elements:\n%s", text)
	}
	counters, err := be.Counters(ctx)
	if err != nil || len(counters) != 2 {
		t.Errorf("counters: %v, %v; want dropped and more", counters, err)
	}
	sync(nil, rs)

	// A transaction that fails before it is sent (a rule outside the
	// vocabulary) leaves nothing queued for the next one.
	bad := NewTx("berth-test")
	bad.AddChain("leaked", nil)
	bad.AddRule("leaked", "log prefix x")
	if err := be.Apply(ctx, bad); err == nil {
		t.Fatal("a rule outside the vocabulary was applied")
	}
	good := NewTx("berth-test")
	good.AddChain("after", nil)
	if err := be.Apply(ctx, good); err != nil {
		t.Fatalf("the transaction after a refused one: %v", err)
	}
	if chains, _ := nftlist.Table(t, ns, "berth-test"); chains["leaked"] != nil || chains["after"] == nil {
		t.Errorf("after a refused transaction and a good one: chains %v, want after and not leaked", slices.Sorted(maps.Keys(chains)))
	}
	if t.Failed() {
		_, text := nftlist.Table(t, ns, "berth-test")
		t.Logf("table:\n%s", text)
	}
}
