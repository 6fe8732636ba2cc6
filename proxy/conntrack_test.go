package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/berthnet/berth/internal/nftrules"
)

type recordingCT struct{ to, toService []netip.Addr }

func (r *recordingCT) ForgetUDPTo(a netip.Addr) (int, error) {
	r.to = append(r.to, a)
	return 1, nil
}

func (r *recordingCT) ForgetUDPToService(a netip.Addr) (int, error) {
	r.toService = append(r.toService, a)
	return 1, nil
}

// UDP flows are forgotten when their endpoint leaves the last UDP port
// that had it, and when a UDP Service gets its first endpoints; through a
// full sync and through a delta alike.
func TestUDPFlowsForgotten(t *testing.T) {
	ct := &recordingCT{}
	s := NewSyncer(nftrules.NewFake(Table), ct)
	a := dns()
	b := dns()
	b.Key.Name, b.ClusterIPs = "dns2", []netip.Addr{addr("10.96.0.11")}
	st := baseState(a, b)
	st.Endpoints[a.Key] = []Endpoint{ep(epB, 53, false), ep(epC, 53, false)}
	st.Endpoints[b.Key] = []Endpoint{ep(epB, 53, false)}
	ctx := context.Background()
	if err := s.Sync(ctx, st); err != nil {
		t.Fatal(err)
	}
	ct.to, ct.toService = nil, nil
	// epB leaves a but stays in b: nothing to forget. epC leaves a, the
	// last port that had it.
	st.Endpoints[a.Key] = []Endpoint{ep(addr("10.244.3.3"), 53, false)}
	if err := s.Sync(ctx, st); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ct.to) != "[10.244.2.9]" || len(ct.toService) != 0 {
		t.Errorf("after endpoints moved: forgot flows to %v and to Services %v; want to 10.244.2.9 only", ct.to, ct.toService)
	}
	ct.to = nil
	// A delta: b loses its only endpoint (epB leaves the last port), then
	// gets one back (flows sent to b while it had none are forgotten).
	if err := s.Update(ctx, Delta{Upsert: []ServicePort{b}, Endpoints: map[PortKey][]Endpoint{b.Key: nil}, ClusterCIDRs: st.ClusterCIDRs}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ct.to) != "[10.244.1.7]" {
		t.Errorf("b emptied by a delta: forgot flows to %v, want 10.244.1.7", ct.to)
	}
	if err := s.Update(ctx, Delta{Upsert: []ServicePort{b}, Endpoints: map[PortKey][]Endpoint{b.Key: {ep(epC, 53, false)}}, ClusterCIDRs: st.ClusterCIDRs}); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ct.toService, addr("10.96.0.11")) {
		t.Errorf("b got endpoints again: forgot flows to Services %v, want 10.96.0.11", ct.toService)
	}
	// A TCP port forgets nothing.
	ct.to, ct.toService = nil, nil
	web := ServicePort{Key: PortKey{"shop", "web", "http", "tcp"}, ClusterIPs: []netip.Addr{addr("10.96.5.5")}, Port: 80}
	if err := s.Update(ctx, Delta{Upsert: []ServicePort{web}, Endpoints: map[PortKey][]Endpoint{web.Key: {ep(epB, 80, false)}}, ClusterCIDRs: st.ClusterCIDRs}); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, Delta{Remove: []PortKey{web.Key}, ClusterCIDRs: st.ClusterCIDRs}); err != nil {
		t.Fatal(err)
	}
	if len(ct.to)+len(ct.toService) != 0 {
		t.Errorf("a TCP port came and went: forgot %v %v", ct.to, ct.toService)
	}
}
