package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/berthnet/berth/test/netnstest"
)

// The kernel's nftables accepts the rules exactly as built, at start-up and
// as an incremental sync, in a throwaway namespace.
func TestKernelAcceptsRules(t *testing.T) {
	ns := netnstest.New(t)
	st := baseState(dns())
	st.Endpoints[dns().Key] = []Endpoint{ep(epB, 5353, false), ep(addr("fd00:10:244:1::7"), 5353, true)}
	web := ServicePort{Key: PortKey{"shop", "web", "http", "tcp"}, ClusterIPs: []netip.Addr{addr("10.96.5.5")}, Port: 80,
		NodePort: 30080, LoadBalancerIPs: []netip.Addr{addr("198.51.100.10")}, ExternalLocal: true}
	st.Services = append(st.Services, web)
	st.Endpoints[web.Key] = []Endpoint{ep(epC, 8080, true), ep(epB, 8080, false)}
	sticky := dns()
	sticky.Key.Name, sticky.ClusterIPs, sticky.AffinitySeconds = "sticky", []netip.Addr{addr("10.96.0.11")}, 600
	st.Services = append(st.Services, sticky)
	st.Endpoints[sticky.Key] = []Endpoint{ep(epB, 53, false), ep(epC, 53, false)}
	empty := ServicePort{Key: PortKey{"shop", "empty", "p", "tcp"}, ClusterIPs: []netip.Addr{addr("10.96.5.7")}, Port: 81, NodePort: 30081}
	st.Services = append(st.Services, empty)

	err := ns.Do(func() error {
		nft, err := knftables.New(knftables.InetFamily, Table)
		if err != nil {
			return err
		}
		first := Build(st)
		tx := nft.NewTransaction()
		Sync(tx, nil, first)
		if err := nft.Run(context.Background(), tx); err != nil {
			return fmt.Errorf("full sync: %w", err)
		}
		delete(st.Endpoints, web.Key)
		st.Endpoints[sticky.Key] = st.Endpoints[sticky.Key][:1]
		st.Endpoints[empty.Key] = []Endpoint{ep(epC, 81, false)}
		tx = nft.NewTransaction()
		Sync(tx, &first, Build(st))
		if err := nft.Run(context.Background(), tx); err != nil {
			return fmt.Errorf("incremental sync: %w", err)
		}
		// A full rebuild over the existing table, as after a failed apply.
		tx = nft.NewTransaction()
		Sync(tx, nil, Build(st))
		if err := nft.Run(context.Background(), tx); err != nil {
			return fmt.Errorf("full rebuild over an existing table: %w", err)
		}
		out, err := exec.Command("nft", "list", "table", "inet", Table).CombinedOutput()
		if err != nil {
			return fmt.Errorf("nft list: %v: %s", err, out)
		}
		for _, want := range []string{"10.96.5.7 . tcp . 81 : goto svc-", "dnat ip to 10.244.2.9:81", "10.96.5.5 . tcp . 80 : goto reject-service", "timeout 10m", "update @affinity-"} {
			if !strings.Contains(string(out), want) {
				return fmt.Errorf("kernel table lacks %q:\n%s", want, out)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
