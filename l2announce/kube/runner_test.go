package kube

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

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
// peers with their InternalIPs (where heartbeats may come from).
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
	sync := func(wantReady string) {
		t.Helper()
		if err := r.sync(ctx); err != nil {
			t.Fatalf("sync: %v", err)
		}
		if got := fmt.Sprint(r.Ready()); got != wantReady {
			t.Errorf("Ready: %s; want %s", got, wantReady)
		}
	}
	sync("<nil>")
	if got := fmt.Sprint(r.Peers().Peers()); got != "[{node-b [fd00::12 198.18.0.12] 7947}]" {
		t.Errorf("peers %s; want node-b with both its InternalIPs, port 7947", got)
	}
	for addr, want := range map[string]string{"fd00::12": "node-b", "198.18.0.12": "node-b", "::ffff:198.18.0.12": "node-b", "198.18.0.13": ""} {
		if got := r.Peers().Name(netip.MustParseAddr(addr)); got != want {
			t.Errorf("heartbeat from %s: taken as %q; want %q", addr, got, want)
		}
	}
	if got := fmt.Sprint(ann.nodes); got != "[{node-a map[] false} {node-b map[] false}]" {
		t.Errorf("nodes given to the announcer: %s", got)
	}

	// The announcer's problem makes the node unready; the rebuild itself
	// succeeded, so it is not retried.
	ann.set(errors.New("open the ARP/NDP responders of eth0: operation not permitted"))
	for range 2 {
		sync("L2Announcement: open the ARP/NDP responders of eth0: operation not permitted")
	}
	ann.set(nil)
	sync("<nil>")
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

// A rebuild that cannot read the objects fails (the loop retries it) and
// makes the node unready, saying what it could not read.
func TestRunnerReadFailure(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithInterceptorFuncs(interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			if _, ok := list.(*v1alpha1.IPPoolList); ok {
				return errors.New("ippools.berth.dev is forbidden")
			}
			return c.List(ctx, list, opts...)
		},
	}).Build()
	r := &Runner{Node: "node-a", Reader: c, Announcer: &announcerState{}, Log: testr.New(t)}
	want := "list *v1alpha1.IPPoolList: ippools.berth.dev is forbidden"
	if err := r.sync(context.Background()); err == nil || err.Error() != want {
		t.Errorf("sync: %v; want %q", err, want)
	}
	if err := r.Ready(); err == nil || err.Error() != "L2Announcement: "+want {
		t.Errorf("Ready: %v; want it to say %q", err, want)
	}
}
