package kube

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/bgp"
)

// The runner, reading with only the agent's roles from a real API
// server, refuses BGPPeers whose address is inside a ServiceCIDR, a
// node's pod range or an IPPool, and the node's status entry of each says
// so (Configured False, AddressInClusterRange, the range named); a peer
// beside them runs.
func TestRunnerRefusesPeersInClusterRanges(t *testing.T) {
	env, scheme, admin := apiServer(t)
	ctx := context.Background()
	agent := env.AgentClient(t, scheme)
	for _, o := range []client.Object{
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"}, Spec: corev1.NodeSpec{PodCIDRs: []string{"10.244.1.0/24"}}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node2"}, Spec: corev1.NodeSpec{PodCIDRs: []string{"10.244.2.0/24"}}},
		&networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "extra"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.100.0.0/16"}}},
		&v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "public"}, Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.Address{"198.51.100.0/24"}}},
		&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "in-services"}, Spec: v1alpha1.BGPPeerSpec{Address: "10.100.0.5", PeerASN: 64500, LocalASN: 64512}},
		&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "in-pods"}, Spec: v1alpha1.BGPPeerSpec{Address: "10.244.2.9", PeerASN: 64500, LocalASN: 64512}},
		&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "in-pool"}, Spec: v1alpha1.BGPPeerSpec{Address: "198.51.100.1", PeerASN: 64500, LocalASN: 64512}},
		// Beside them, on loopback: the session reaches nothing outside the test.
		&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "router"}, Spec: v1alpha1.BGPPeerSpec{Address: "127.0.0.1", Port: 1, PeerASN: 64500, LocalASN: 64512}},
	} {
		if err := admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	node := &corev1.Node{}
	if err := admin.Get(ctx, client.ObjectKey{Name: "node1"}, node); err != nil {
		t.Fatal(err)
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.11"}}
	if err := admin.Status().Update(ctx, node); err != nil {
		t.Fatal(err)
	}
	speaker := bgp.NewSpeaker(slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() { speaker.Shutdown(context.Background()) })
	r := NewRunner("node1", "berth-system", agent, speaker, testr.New(t))
	r.Status = &StatusWriter{Node: "node1", Client: agent, Log: testr.New(t)}
	if err := r.syncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	r.Status.Write(ctx, nil, r.problems)
	for peer, want := range map[string]string{
		"in-services": "address 10.100.0.5 is inside the Service range 10.100.0.0/16 (ServiceCIDR extra)",
		"in-pods":     "address 10.244.2.9 is inside node node2's pod range 10.244.2.0/24",
		"in-pool":     "address 198.51.100.1 is inside IPPool public's addresses 198.51.100.0/24",
	} {
		var p v1alpha1.BGPPeer
		if err := admin.Get(ctx, client.ObjectKey{Name: peer}, &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Status.Nodes) != 1 || len(p.Status.Nodes[0].Conditions) != 1 {
			t.Errorf("%s: status.nodes %+v, want node1's entry with one condition", peer, p.Status.Nodes)
			continue
		}
		c := p.Status.Nodes[0].Conditions[0]
		if c.Type != v1alpha1.BGPConditionConfigured || c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonAddressInClusterRange || !strings.HasPrefix(c.Message, want) {
			t.Errorf("%s: condition %+v, want Configured False %s saying %q", peer, c, v1alpha1.ReasonAddressInClusterRange, want)
		}
	}
	if st := speaker.States(ctx); len(st) != 1 || st[0].Name != "router" {
		t.Errorf("the speaker runs %+v, want router alone", st)
	}
}
