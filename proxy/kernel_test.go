package proxy

import (
	"context"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/berthnet/berth/internal/nftrules/nftlist"
	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/netnstest"
)

// kernelState uses every rule form Build writes: dual-stack endpoints,
// Local policy, node ports, affinity with one and with several endpoints,
// a Service without endpoints, hairpin pairs.
func kernelState() State {
	st := baseState(dns())
	st.Endpoints[dns().Key] = []Endpoint{ep(epB, 5353, false), ep(addr("fd00:10:244:1::7"), 5353, true)}
	web := ServicePort{Key: PortKey{"shop", "web", "http", "tcp"}, ClusterIPs: []netip.Addr{addr("10.96.5.5"), addr("fd00:10:96::5")}, Port: 80,
		NodePort: 30080, LoadBalancerIPs: []netip.Addr{addr("198.51.100.10")}, ExternalLocal: true}
	st.Services = append(st.Services, web)
	st.Endpoints[web.Key] = []Endpoint{ep(epC, 8080, true), ep(epB, 8080, false), ep(addr("fd00:10:244:2::9"), 8080, false)}
	sticky := dns()
	sticky.Key.Name, sticky.ClusterIPs, sticky.AffinitySeconds = "sticky", []netip.Addr{addr("10.96.0.11"), addr("fd00:10:96::b")}, 600
	st.Services = append(st.Services, sticky)
	st.Endpoints[sticky.Key] = []Endpoint{ep(epB, 53, false), ep(epC, 53, false), ep(addr("fd00:10:244:1::7"), 53, false)}
	empty := ServicePort{Key: PortKey{"shop", "empty", "p", "tcp"}, ClusterIPs: []netip.Addr{addr("10.96.5.7")}, Port: 81, NodePort: 30081}
	st.Services = append(st.Services, empty)
	st.NodePortCIDRs = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("192.0.2.0/25"), netip.MustParsePrefix("2001:db8::/64")}
	return st
}

// listChains reads every chain's rules from `nft list table`.
func listChains(t *testing.T, ns *netns.Namespace) (map[string][]string, string) {
	t.Helper()
	return nftlist.Table(t, ns, Table)
}

// The kernel takes the rules through netlink exactly as built: nft lists
// every chain back with the very text Build wrote, at start-up, after an
// incremental sync and after a rebuild over the existing table.
func TestKernelAcceptsRules(t *testing.T) {
	ns := netnstest.New(t)
	var be *Netlink
	if err := ns.Do(func() (err error) {
		be, err = NewNetlink()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	check := func(what string, st State, fresh bool) {
		t.Helper()
		want := Build(st)
		got, text := listChains(t, ns)
		for _, b := range baseChains() {
			want.Chains[b.Name] = b.Rules
		}
		// Where a Service's endpoints sit in the endpoint maps depends on
		// the syncer's history; the rest must read back as written.
		offsets := regexp.MustCompile(`offset [0-9]+`)
		for name, rules := range want.Chains {
			if offsets.ReplaceAllString(strings.Join(got[name], "\n"), "offset N") != offsets.ReplaceAllString(strings.Join(rules, "\n"), "offset N") {
				t.Errorf("%s: chain %s lists as\n  %s\nwant\n  %s", what, name, strings.Join(got[name], "\n  "), strings.Join(rules, "\n  "))
			}
		}
		for name := range got {
			if _, ok := want.Chains[name]; !ok {
				t.Errorf("%s: stale chain %s", what, name)
			}
		}
		for name, m := range want.Maps {
			if (strings.HasPrefix(name, "endpoints")) && !fresh {
				continue
			}
			for k, v := range m.Elements {
				if !strings.Contains(text, k+" : "+v) {
					t.Errorf("%s: map %s lacks %s : %s", what, name, k, v)
				}
			}
		}
		if t.Failed() {
			t.Fatalf("table:\n%s", text)
		}
	}
	ctx := context.Background()
	st := kernelState()
	s := NewSyncer(be, nil)
	if err := s.Sync(ctx, st); err != nil {
		t.Fatalf("full sync: %v", err)
	}
	check("full sync", st, true)
	for _, want := range []string{"192.0.2.0/24", "2001:db8::/64", "fd00:10:244:1::7 . fd00:10:244:1::7", "timeout 10m"} {
		if _, text := listChains(t, ns); !strings.Contains(text, want) {
			t.Errorf("table lacks %q:\n%s", want, text)
		}
	}

	// Incremental: endpoints go and come, affinity ends, a Service goes.
	web := st.Services[1].Key
	delete(st.Endpoints, web)
	sticky := st.Services[2]
	st.Endpoints[sticky.Key] = st.Endpoints[sticky.Key][:1]
	st.Endpoints[st.Services[3].Key] = []Endpoint{ep(epC, 81, false)}
	if err := s.Sync(ctx, st); err != nil {
		t.Fatalf("incremental sync: %v", err)
	}
	check("incremental sync", st, false)
	st.Services[2].AffinitySeconds = 0
	st.Services = st.Services[1:]
	st.NodePortCIDRs = nil
	if err := s.Sync(ctx, st); err != nil {
		t.Fatalf("incremental sync: %v", err)
	}
	check("second incremental sync", st, false)
	if _, text := listChains(t, ns); !strings.Contains(text, "::/0") || !strings.Contains(text, "0.0.0.0/0") {
		t.Errorf("node ports on every address: the sets lack 0.0.0.0/0 and ::/0:\n%s", text)
	}

	// A new syncer (an agent restart) replaces the table whole.
	st = kernelState()
	if err := NewSyncer(be, nil).Sync(ctx, st); err != nil {
		t.Fatalf("rebuild over the existing table: %v", err)
	}
	check("rebuild", st, true)
}
