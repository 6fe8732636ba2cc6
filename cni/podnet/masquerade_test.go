package podnet

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/berthnet/berth/internal/nftrules"
)

// The masquerade table, traced: pods leaving the cluster take the node's
// address, pod to pod keeps the pod's; a periodic apply with nothing
// changed sends nothing, a change sends only itself, and a refused apply
// or a table deleted by someone else is followed by a rebuild.
func TestMasquerade(t *testing.T) {
	ctx := context.Background()
	f := nftrules.NewFake(NFTable)
	a := &Applier{nft: f}
	p := netip.MustParsePrefix
	st := State{
		PodCIDRs:     []netip.Prefix{p("10.244.1.0/24"), p("fd00:10:244:1::/64")},
		ClusterCIDRs: []netip.Prefix{p("10.244.0.0/24"), p("10.244.1.0/24"), p("fd00:10:244::/64"), p("fd00:10:244:1::/64")},
	}
	if err := a.applyMasquerade(ctx, st); err != nil {
		t.Fatal(err)
	}
	check := func(src, dst string, masq bool) {
		t.Helper()
		rs, ok := f.Ruleset()
		if !ok {
			t.Fatalf("%s to %s: no table", src, dst)
		}
		tr, err := nftrules.NewTracer(rs)
		if err != nil {
			t.Fatal(err)
		}
		res, err := tr.Run("postrouting", nftrules.Packet{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: "tcp", DPort: 443})
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 1 || res[0].Verdict != "accept" || res[0].Masquerade != masq {
			t.Errorf("%s to %s: %+v, want masquerade %v", src, dst, res, masq)
		}
	}
	check("10.244.1.5", "8.8.8.8", true)
	check("10.244.1.5", "10.244.0.9", false)
	check("10.244.1.5", "10.244.2.9", true) // not (yet) a pod range
	check("fd00:10:244:1::5", "2001:db8::1", true)
	check("fd00:10:244:1::5", "fd00:10:244::9", false)
	check("192.0.2.11", "8.8.8.8", false) // the node's own traffic

	runs := f.Runs()
	if err := a.applyMasquerade(ctx, st); err != nil || f.Runs() != runs {
		t.Errorf("an unchanged state sent a transaction (%v)", err)
	}
	st.ClusterCIDRs = append(st.ClusterCIDRs, p("10.244.2.0/24"))
	if err := a.applyMasquerade(ctx, st); err != nil {
		t.Fatal(err)
	}
	if tx, _ := f.LastTx(); strings.Contains(tx, "table") || strings.Contains(tx, "rule") {
		t.Errorf("a new cluster range rebuilt more than its set:\n%s", tx)
	}
	check("10.244.1.5", "10.244.2.9", false)

	f.FailNext(errors.New("refused"))
	st.ClusterCIDRs = st.ClusterCIDRs[:4]
	if err := a.applyMasquerade(ctx, st); err == nil {
		t.Fatal("a refused transaction was not reported")
	}
	if err := a.applyMasquerade(ctx, st); err != nil {
		t.Fatal(err)
	}
	if tx, _ := f.LastTx(); !strings.Contains(tx, "delete table inet berth-podnet") {
		t.Errorf("the apply after a failure did not rebuild the table:\n%s", tx)
	}
	check("10.244.1.5", "10.244.2.9", true)

	// The table deleted behind the applier's back comes back whole.
	gone := nftrules.NewTx(NFTable)
	gone.DeleteTable()
	if err := f.Apply(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if err := a.applyMasquerade(ctx, st); err != nil {
		t.Fatal(err)
	}
	check("10.244.1.5", "8.8.8.8", true)
}
