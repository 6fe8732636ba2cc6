package kube

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/bgp"
)

// The runner reports as the agent's other components do: not ready before
// its first sync, and while the last one failed (its Node missing from
// the cache; the speaker shut down), with an event on the Node when syncs
// start failing and one when they succeed again, none while nothing
// changes, and the syncs counted by result.
func TestRunnerReports(t *testing.T) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	c := fake.NewClientBuilder().WithScheme(scheme).Build()
	speaker := bgp.NewSpeaker(slog.New(slog.NewTextHandler(io.Discard, nil)))
	r := NewRunner("node1", "berth-system", c, speaker, logr.Discard())
	rec := events.NewFakeRecorder(10)
	r.Recorder = rec
	ctx := context.Background()

	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "first sync pending") {
		t.Errorf("readiness before the first sync: %v, want pending", err)
	}
	// No Node object: the sync fails, and says which.
	if err := r.sync(ctx); err == nil || !strings.Contains(err.Error(), "node node1") {
		t.Fatalf("sync without the Node: %v", err)
	}
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "node node1") {
		t.Errorf("readiness after a failed sync: %v", err)
	}
	// No event yet: it goes on the Node, which is not there.
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.11"}}}}
	if err := c.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := r.sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Err(); err != nil {
		t.Errorf("readiness after a good sync: %v", err)
	}
	// The speaker gone: the apply fails; then the runner reports it.
	speaker.Shutdown(ctx)
	for range 2 {
		if err := r.sync(ctx); err == nil || !strings.Contains(err.Error(), "shut down") {
			t.Fatalf("sync with the speaker shut down: %v", err)
		}
	}
	close(rec.Events)
	var got []string
	for e := range rec.Events {
		got = append(got, e)
	}
	want := []string{
		"Normal BGPReady BGP speaker in step with the BGPPeers and BGPAnnouncements again",
		"Warning BGPFailed apply the plan to the speaker: the BGP speaker is shut down",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "BGP: apply the plan to the speaker: the BGP speaker is shut down") {
		t.Errorf("readiness after the speaker shut down: %v", err)
	}
	if ok, bad := testutil.ToFloat64(r.syncs.WithLabelValues("ok")), testutil.ToFloat64(r.syncs.WithLabelValues("error")); ok != 2 || bad != 3 {
		t.Errorf("berth_agent_bgp_syncs_total: ok %v, error %v; want 2 and 3", ok, bad)
	}
}
