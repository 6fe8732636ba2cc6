package kube

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/l2announce"
)

// announcerState records what the runner gives the announcer, and says
// what the test sets as its health.
type announcerState struct {
	mu    sync.Mutex
	addrs []*l2announce.Address
	nodes []l2announce.NodeInfo
	err   error
}

func (a *announcerState) SetDesired(addrs []*l2announce.Address, nodes []l2announce.NodeInfo, _ []*l2announce.Group) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.addrs, a.nodes = addrs, nodes
}

func (a *announcerState) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

func (a *announcerState) set(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.err = err
}

// The runner's contract, as the other node components have it: not ready
// before its first sync; ready after one; a problem of the announcer makes
// it unready, saying why, with one Warning event on the Node; its end makes
// it ready with one Normal event. It feeds the announcer the Nodes and the
// peers their first InternalIP.
func TestRunnerHealth(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	self := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}
	peer := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-b"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeHostName, Address: "node-b"},
		{Type: corev1.NodeInternalIP, Address: "fd00::12"},
		{Type: corev1.NodeInternalIP, Address: "198.18.0.12"},
	}}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(self, peer).Build()
	rec := events.NewFakeRecorder(10)
	ann := &announcerState{}
	r := &Runner{Node: "node-a", Reader: c, Announcer: ann, HeartbeatPort: 7947, Recorder: rec, Log: testr.New(t)}
	ctx := context.Background()

	if err := r.Ready(); err == nil || !strings.Contains(err.Error(), "first sync pending") {
		t.Errorf("Ready before a sync: %v; want first sync pending", err)
	}
	sync := func() error {
		err := r.sync(ctx)
		if got := r.Ready(); fmt.Sprint(got) != fmt.Sprint(layer2(err)) {
			t.Errorf("Ready %v after a sync that returned %v", got, err)
		}
		return err
	}
	if err := sync(); err != nil {
		t.Fatalf("first sync: %v", err)
	}
	if got := fmt.Sprint(r.Peers()); got != "[[fd00::12]:7947]" {
		t.Errorf("peers %s; want [[fd00::12]:7947] (node-b's first InternalIP)", got)
	}
	if got := fmt.Sprint(ann.nodes); got != "[{node-a map[] false} {node-b map[] false}]" {
		t.Errorf("nodes given to the announcer: %s", got)
	}

	ann.set(errors.New("open the ARP/NDP responders of eth0: operation not permitted"))
	for range 2 {
		if err := sync(); err == nil || err.Error() != "open the ARP/NDP responders of eth0: operation not permitted" {
			t.Errorf("sync with a failing announcer: %v", err)
		}
	}
	ann.set(nil)
	if err := sync(); err != nil {
		t.Errorf("sync after the announcer recovered: %v", err)
	}
	close(rec.Events)
	var got []string
	for e := range rec.Events {
		got = append(got, e)
	}
	want := []string{
		"Warning L2AnnouncementFailed open the ARP/NDP responders of eth0: operation not permitted",
		"Normal L2AnnouncementReady layer-2 announcement works again",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events %q; want %q", got, want)
	}
}

// layer2 is what Ready says after a sync that returned err.
func layer2(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("layer-2 announcement: %s", err)
}
