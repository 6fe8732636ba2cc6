package syncreport

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// A sequence of sync outcomes, and what the operator sees after each: the
// readiness check's answer and the events recorded on the Node.
func TestReporterSequence(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	c := fake.NewClientBuilder().WithScheme(scheme.Scheme).WithObjects(node).Build()
	rec := events.NewFakeRecorder(20)
	r := New("ServiceProxy", "n1", "service proxy rules in place", c, rec, logr.Discard())
	ctx := context.Background()
	nft := errors.New("netlink: operation not permitted")
	steps := []struct {
		name   string
		err    error
		ready  string // "" ready, else a part of the error
		events []string
	}{
		{"before any sync", nil, "first sync pending", nil},
		{"first success: quiet", nil, "", nil},
		{"again: nothing new", nil, "", nil},
		{"a failure", nft, "ServiceProxy: netlink: operation not permitted", []string{"Warning ServiceProxyFailed netlink: operation not permitted"}},
		{"the same failure: no second event", nft, "operation not permitted", nil},
		{"another failure", errors.New("table busy"), "ServiceProxy: table busy", []string{"Warning ServiceProxyFailed table busy"}},
		{"recovered", nil, "", []string{"Normal ServiceProxyReady service proxy rules in place again"}},
		{"still fine", nil, "", nil},
	}
	for i, s := range steps {
		if i > 0 {
			r.Report(ctx, s.err)
		}
		err := r.Ready()
		switch {
		case s.ready == "" && err != nil:
			t.Errorf("%s: not ready: %v", s.name, err)
		case s.ready != "" && (err == nil || !strings.Contains(err.Error(), s.ready)):
			t.Errorf("%s: readiness %v, want an error saying %q", s.name, err, s.ready)
		}
		var got []string
		for len(rec.Events) > 0 {
			got = append(got, <-rec.Events)
		}
		if strings.Join(got, "|") != strings.Join(s.events, "|") {
			t.Errorf("%s: events %q, want %q", s.name, got, s.events)
		}
	}
}

// A first sync that fails is an event at once: the agent never got its
// rules in place.
func TestReporterFirstFailure(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(scheme.Scheme).WithObjects(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}).Build()
	rec := events.NewFakeRecorder(5)
	r := New("PodNetwork", "n1", "pod network in place", c, rec, logr.Discard())
	r.Report(context.Background(), errors.New("node n1 has no podCIDR yet"))
	if got := <-rec.Events; got != "Warning PodNetworkFailed node n1 has no podCIDR yet" {
		t.Errorf("event %q", got)
	}
	if err := r.Ready(); err == nil {
		t.Error("ready after a failed first sync")
	}
}

func TestTruncate(t *testing.T) {
	long := strings.Repeat("é", 600) // 1,200 bytes
	got := truncate(long)
	if len(got) > maxMessage || !strings.HasSuffix(got, "...") || !strings.HasPrefix(long, strings.TrimSuffix(got, "...")) {
		t.Errorf("truncated to %d bytes: %q", len(got), got[len(got)-8:])
	}
	if truncate("short") != "short" {
		t.Error("a short message changed")
	}
}
