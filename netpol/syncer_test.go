package netpol

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"sigs.k8s.io/knftables"
)

// TestSyncerSendsOnlyChanges: a sync with nothing changed sends nothing;
// a relabelled pod sends its set and chain changes only; after a failed
// apply the next sync rebuilds the table whole.
func TestSyncerSendsOnlyChanges(t *testing.T) {
	ctx := context.Background()
	f := knftables.NewFake(knftables.InetFamily, Table)
	s := NewSyncer(f)
	in := goldenInput()
	if err := s.Sync(ctx, in); err != nil {
		t.Fatal(err)
	}
	if s.Err() != nil {
		t.Fatalf("healthy sync reports %v", s.Err())
	}
	f.LastTransaction = nil
	if err := s.Sync(ctx, in); err != nil {
		t.Fatal(err)
	}
	if f.LastTransaction != nil {
		t.Errorf("an unchanged sync sent:\n%s", f.LastTransaction)
	}
	// y/b becomes pod=c: it joins ns-y-and-c's peers of x/a.
	in.Pods = pods()
	in.Pods[4].Labels = map[string]string{"pod": "c"}
	if err := s.Sync(ctx, in); err != nil {
		t.Fatal(err)
	}
	got := f.LastTransaction.String()
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "add element inet berth-netpol peers-") || !strings.HasSuffix(lines[0], "{ 10.0.2.2 }") || !strings.HasSuffix(lines[1], "{ fd00::2:2 }") {
		t.Errorf("relabel sent more or other than the peer sets' elements:\n%s", got)
	}
	// The kernel refuses a transaction: the syncer reports it and rebuilds.
	f.Table.Sets = map[string]*knftables.FakeSet{}
	in.Pods = pods()
	if err := s.Sync(ctx, in); err == nil || s.Err() == nil {
		t.Fatalf("a refused transaction was not reported")
	}
	if err := s.Sync(ctx, in); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if !strings.Contains(f.LastTransaction.String(), "delete table inet berth-netpol") {
		t.Errorf("the sync after a failure was not a rebuild:\n%s", f.LastTransaction)
	}
	if n := testutil.ToFloat64(s.failures); n != 1 {
		t.Errorf("failures = %v, want 1", n)
	}
}
