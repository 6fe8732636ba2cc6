package netpol

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/berthnet/berth/internal/nftrules"
)

// TestSyncerSendsOnlyChanges: a sync with nothing changed sends nothing;
// a relabelled pod sends its set and chain changes only; after a failed
// apply the next sync rebuilds the table whole.
func TestSyncerSendsOnlyChanges(t *testing.T) {
	ctx := context.Background()
	f := nftrules.NewFake(Table)
	s := NewSyncer(f)
	in := goldenInput()
	if err := s.Sync(ctx, in); err != nil {
		t.Fatal(err)
	}
	if s.Err() != nil {
		t.Fatalf("healthy sync reports %v", s.Err())
	}
	runs := f.Runs()
	if err := s.Sync(ctx, in); err != nil {
		t.Fatal(err)
	}
	if tx, _ := f.LastTx(); f.Runs() != runs {
		t.Errorf("an unchanged sync sent:\n%s", tx)
	}
	// y/b becomes pod=c: it joins ns-y-and-c's peers of x/a.
	in.Pods = pods()
	in.Pods[4].Labels = map[string]string{"pod": "c"}
	if err := s.Sync(ctx, in); err != nil {
		t.Fatal(err)
	}
	got, _ := f.LastTx()
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "add element inet berth-netpol peers-") || !strings.HasSuffix(lines[0], "{ 10.0.2.2 }") || !strings.HasSuffix(lines[1], "{ fd00::2:2 }") {
		t.Errorf("relabel sent more or other than the peer sets' elements:\n%s", got)
	}
	// The kernel refuses a transaction: the syncer reports it and rebuilds.
	f.FailNext(errors.New("the kernel said no"))
	in.Pods = pods()
	if err := s.Sync(ctx, in); err == nil || s.Err() == nil {
		t.Fatalf("a refused transaction was not reported")
	}
	if err := s.Sync(ctx, in); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if tx, _ := f.LastTx(); !strings.Contains(tx, "delete table inet berth-netpol") {
		t.Errorf("the sync after a failure was not a rebuild:\n%s", tx)
	}
	if n := testutil.ToFloat64(s.failures); n != 1 {
		t.Errorf("failures = %v, want 1", n)
	}
}
