package kube

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/bgp"
	"github.com/berthnet/berth/test/kubetest"
)

// Two nodes' status writers, with only the agent's role, against a real
// API server: each keeps its own entry in status.nodes (state, why the
// session is down, prefixes); a peer left out says why; a peer the node no
// longer runs loses that node's entry and nothing else.
func TestStatusWriterNodes(t *testing.T) {
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	env := kubetest.Start(t, kubetest.Options{CRDPaths: []string{filepath.Join(root, "config", "crd", "bases")}})
	ctx := context.Background()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	admin, err := client.New(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	agent := env.AgentClient(t, scheme)
	for _, name := range []string{"tor-a", "tor-b"} {
		if err := admin.Create(ctx, &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1alpha1.BGPPeerSpec{Address: "192.0.2.1", PeerASN: 64500, LocalASN: 64512}}); err != nil {
			t.Fatal(err)
		}
	}
	w1 := &StatusWriter{Node: "node1", Client: agent, Log: testr.New(t)}
	w2 := &StatusWriter{Node: "node2", Client: agent, Log: testr.New(t)}

	// nodes reads a peer's status.nodes as "node state advertised/accepted
	// lastError", sorted.
	nodes := func(peer string) []string {
		t.Helper()
		var p v1alpha1.BGPPeer
		if err := admin.Get(ctx, client.ObjectKey{Name: peer}, &p); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, n := range p.Status.Nodes {
			out = append(out, fmt.Sprintf("%s %s %d/%d %s", n.Node, n.State, n.PrefixesAdvertised, n.PrefixesAccepted, n.LastError))
		}
		sort.Strings(out)
		return out
	}
	want := func(peer string, lines ...string) {
		t.Helper()
		if got := nodes(peer); strings.Join(got, "\n") != strings.Join(lines, "\n") {
			t.Errorf("%s status.nodes:\n%s\nwant:\n%s", peer, strings.Join(got, "\n"), strings.Join(lines, "\n"))
		}
	}

	w1.Write(ctx, []bgp.PeerState{{Name: "tor-a", State: "Established", Advertised: 3, Accepted: 1}}, nil)
	w2.Write(ctx, []bgp.PeerState{{Name: "tor-a", State: "Active", LastError: "notification sent: code 2(open) subcode 2(bad peer as)"}},
		map[string]string{"BGPPeer tor-b": `password Secret "md5" not found in the agents' namespace`})
	want("tor-a", "node1 Established 3/1 ", "node2 Active 0/0 notification sent: code 2(open) subcode 2(bad peer as)")
	want("tor-b", `node2 Idle 0/0 password Secret "md5" not found in the agents' namespace`)

	// node2's session comes up; node1 stops running tor-a.
	w2.Write(ctx, []bgp.PeerState{{Name: "tor-a", State: "Established", Advertised: 3}}, nil)
	w1.Write(ctx, nil, nil)
	want("tor-a", "node2 Established 3/0 ")
	want("tor-b")

	// An unchanged state is not written again.
	var before v1alpha1.BGPPeer
	if err := admin.Get(ctx, client.ObjectKey{Name: "tor-a"}, &before); err != nil {
		t.Fatal(err)
	}
	w2.Write(ctx, []bgp.PeerState{{Name: "tor-a", State: "Established", Advertised: 3}}, nil)
	var after v1alpha1.BGPPeer
	if err := admin.Get(ctx, client.ObjectKey{Name: "tor-a"}, &after); err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != before.ResourceVersion {
		t.Errorf("an unchanged state was written again (resourceVersion %s -> %s)", before.ResourceVersion, after.ResourceVersion)
	}
}
