package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/berthnet/berth/internal/nftrules"
)

func manyServices(n int) State {
	st := baseState()
	for i := range n {
		sp := ServicePort{Key: PortKey{"bulk", fmt.Sprintf("svc%d", i), "http", "tcp"},
			ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})}, Port: 80}
		st.Services = append(st.Services, sp)
		st.Endpoints[sp.Key] = []Endpoint{ep(netip.AddrFrom4([4]byte{10, 244, byte(i >> 8), byte(i)}), 8080, false)}
	}
	return st
}

// A cold start (no table yet) lands in bounded transactions and ends with
// exactly the table a one-shot build gives; a restart over an existing
// table is one atomic transaction, so the old rules serve until then.
func TestColdStartInBatches(t *testing.T) {
	st := manyServices(25)
	f := nftrules.NewFake(Table)
	s := NewSyncer(f, nil)
	s.batch = 10
	if err := s.Sync(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	// The table with its hooks, then the chains of 10 + 10 + 5 Services,
	// then their elements in as many.
	if f.Runs() != 7 {
		t.Errorf("cold start of 25 Services in batches of 10: %d transactions, want 7", f.Runs())
	}
	live := matchesBuild(t, f, st).live
	if !s.Healthy() {
		t.Error("not healthy after a successful sync")
	}
	// Every Service works, the first batch's and the last's.
	for _, i := range []int{0, 24} {
		p := packet{hook: "prerouting", src: podA, dst: st.Services[i].ClusterIPs[0], dport: 80, proto: "tcp"}
		if got := outcomes(trace(t, live, p)); got != fmt.Sprintf("dnat %s:8080 masq=false", st.Endpoints[st.Services[i].Key][0].Addr) {
			t.Errorf("Service %d after a cold start: %s", i, got)
		}
	}

	// Restart: a new syncer finds the table and replaces it in one go.
	before := f.Runs()
	s2 := NewSyncer(f, nil)
	s2.batch = 10
	if err := s2.Sync(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	if f.Runs()-before != 1 {
		t.Errorf("restart over an existing table: %d transactions, want 1", f.Runs()-before)
	}
	matchesBuild(t, f, st)
}

// A refused transaction leaves the syncer unhealthy, and the next sync
// rebuilds the table whole.
func TestSyncFailureIsUnhealthy(t *testing.T) {
	f := nftrules.NewFake(Table)
	s := NewSyncer(f, nil)
	st := manyServices(3)
	if err := s.Sync(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	f.FailNext(fmt.Errorf("the kernel said no"))
	st.Services = st.Services[1:]
	if err := s.Sync(context.Background(), st); err == nil {
		t.Fatal("a refused transaction succeeded")
	}
	if s.Healthy() {
		t.Error("healthy after a failed sync")
	}
	runs := f.Runs()
	if err := s.Sync(context.Background(), st); err != nil {
		t.Fatalf("the rebuild after a failure: %v", err)
	}
	if !s.Healthy() || f.Runs() != runs+1 {
		t.Error("not healthy, or not one transaction, after the rebuild")
	}
	matchesBuild(t, f, st)
}
