package kube

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/bgp"
)

// The Ready condition of BGPPeers and BGPAnnouncements, written against a
// real API server beside the agents' status.nodes entries (which it
// leaves alone). Expectations written by hand.
func TestReadyConditions(t *testing.T) {
	env, scheme, admin := apiServer(t)
	ctx := context.Background()
	mk := func(o client.Object) {
		t.Helper()
		if err := admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	mk(&v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "lab"}, Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.Address{"198.51.100.0/28"}}})
	peerSpec := func(addr string) v1alpha1.BGPPeerSpec {
		return v1alpha1.BGPPeerSpec{Address: addr, PeerASN: 64500, LocalASN: 64512}
	}
	mk(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "good", Labels: map[string]string{"rack": "a"}}, Spec: peerSpec("192.0.2.1")})
	nosecret := peerSpec("192.0.2.2")
	nosecret.PasswordSecret = &v1alpha1.SecretKeyRef{Name: "md5", Key: "password"}
	mk(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "nosecret"}, Spec: nosecret})
	odd := peerSpec("192.0.2.3")
	odd.ConnectRetryTime = &metav1.Duration{Duration: 2500 * time.Millisecond} // the API server takes it; the speaker cannot
	mk(&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "odd"}, Spec: odd})
	mk(&v1alpha1.BGPAnnouncement{ObjectMeta: metav1.ObjectMeta{Name: "pub"}, Spec: v1alpha1.BGPAnnouncementSpec{IPPools: []string{"lab"}}})
	mk(&v1alpha1.BGPAnnouncement{ObjectMeta: metav1.ObjectMeta{Name: "nopeers"}, Spec: v1alpha1.BGPAnnouncementSpec{IPPools: []string{"lab"},
		PeerSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"rack": "z"}}}}})
	mk(&v1alpha1.BGPAnnouncement{ObjectMeta: metav1.ObjectMeta{Name: "nopools"}, Spec: v1alpha1.BGPAnnouncementSpec{IPPools: []string{"gone"}}})

	// node1's agent: good Established, nosecret left out.
	agent := &StatusWriter{Node: "node1", Client: env.AgentClient(t, scheme), Log: testr.New(t)}
	uid := func(name string) string {
		var p v1alpha1.BGPPeer
		if err := admin.Get(ctx, client.ObjectKey{Name: name}, &p); err != nil {
			t.Fatal(err)
		}
		return string(p.UID)
	}
	agent.Write(ctx, []bgp.PeerState{{Name: "good", UID: uid("good"), State: "Established", Advertised: 1}},
		map[string]Problem{"nosecret": {Reason: v1alpha1.ReasonInvalidPeer, UID: uid("nosecret"),
			Message: `password Secret "md5" not found in the agents' namespace`}})

	w := &ReadyWriter{Client: admin}
	ready := func(obj client.Object, conds func() []metav1.Condition, rec func(context.Context, reconcile.Request) (reconcile.Result, error)) string {
		t.Helper()
		if _, err := rec(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(obj)}); err != nil {
			t.Fatal(err)
		}
		if err := admin.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Fatal(err)
		}
		c := meta.FindStatusCondition(conds(), v1alpha1.ConditionReady)
		if c == nil {
			return "none"
		}
		return fmt.Sprintf("%s %s: %s", c.Status, c.Reason, c.Message)
	}
	for _, c := range []struct{ peer, want string }{
		{"good", "True Valid: valid; sessions Established on 1 of the 1 nodes that peer with it"},
		{"nosecret", `False NodesLeaveOut: 1 of 1 nodes leave the peer out: node1 (InvalidPeer: password Secret "md5" not found in the agents' namespace)`},
		{"odd", "False InvalidPeer: connectRetryTime 2.5s: use whole seconds from 2s (the embedded speaker's least) to 3600s; the nodes leave this peer out"},
	} {
		p := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: c.peer}}
		if got := ready(p, func() []metav1.Condition { return p.Status.Conditions }, w.ReconcilePeer); got != c.want {
			t.Errorf("BGPPeer %s Ready: %s\nwant: %s", c.peer, got, c.want)
		}
		if c.peer == "good" && (len(p.Status.Nodes) != 1 || p.Status.Nodes[0].State != v1alpha1.BGPSessionEstablished) {
			t.Errorf("BGPPeer good's status.nodes after the Ready write: %+v; want node1's entry kept", p.Status.Nodes)
		}
	}
	for _, c := range []struct{ ann, want string }{
		{"pub", "True Accepted: announces IPPool lab to BGPPeers good, nosecret, odd"},
		{"nopeers", "False NoPeers: no BGPPeer matches peerSelectors"},
		{"nopools", "False NoPools: no existing IPPool matches ipPools or ipPoolSelectors"},
	} {
		a := &v1alpha1.BGPAnnouncement{ObjectMeta: metav1.ObjectMeta{Name: c.ann}}
		if got := ready(a, func() []metav1.Condition { return a.Status.Conditions }, w.ReconcileAnnouncement); got != c.want {
			t.Errorf("BGPAnnouncement %s Ready: %s\nwant: %s", c.ann, got, c.want)
		}
	}
}
