package kube

import (
	"context"
	"testing"

	"github.com/go-logr/logr/testr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/bgp"
)

// A BGPPeer deleted and made again under its name is another object: its
// status gets the node's entry for the new session (even when that reads
// as the old one did), and a late write of the old session's state never
// lands on it, against a real API server with the agent's role.
func TestStatusWriterKeysByUID(t *testing.T) {
	env, scheme, admin := apiServer(t)
	ctx := context.Background()
	agent := env.AgentClient(t, scheme)
	create := func() string {
		t.Helper()
		p := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor-uid"},
			Spec: v1alpha1.BGPPeerSpec{Address: "192.0.2.9", PeerASN: 64500, LocalASN: 64512}}
		if err := admin.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		return string(p.UID)
	}
	entries := func() []v1alpha1.BGPPeerNodeStatus {
		t.Helper()
		var p v1alpha1.BGPPeer
		if err := admin.Get(ctx, client.ObjectKey{Name: "tor-uid"}, &p); err != nil {
			t.Fatal(err)
		}
		return p.Status.Nodes
	}
	w := &StatusWriter{Node: "node1", Client: agent, Log: testr.New(t)}

	old := create()
	const refused = "notification received: code 2(open) subcode 2(bad peer as)"
	w.Write(ctx, []bgp.PeerState{{Name: "tor-uid", UID: old, State: "Active", LastError: refused}}, nil)
	if n := entries(); len(n) != 1 || n[0].LastError != refused {
		t.Fatalf("first object's status.nodes %+v; want node1's entry with %q", n, refused)
	}

	if err := admin.Delete(ctx, &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor-uid"}}); err != nil {
		t.Fatal(err)
	}
	fresh := create()

	// The speaker has not synced yet: the old object's session, with a new
	// error, is written again. It must not reach the new object.
	w.Write(ctx, []bgp.PeerState{{Name: "tor-uid", UID: old, State: "Idle", LastError: "hold timer expired"}}, nil)
	if n := entries(); len(n) != 0 {
		t.Errorf("the new object got the deleted one's session: %+v; want no entry", n)
	}

	// Synced: the new object's session, Active with no error yet. Written,
	// though it reads like what was written before.
	w.Write(ctx, []bgp.PeerState{{Name: "tor-uid", UID: fresh, State: "Active", LastError: refused}}, nil)
	if n := entries(); len(n) != 1 || n[0].Node != "node1" || n[0].State != "Active" || n[0].LastError != refused {
		t.Errorf("new object's status.nodes %+v; want node1 Active with its own last error", n)
	}
}
