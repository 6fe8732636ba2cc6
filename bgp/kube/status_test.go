package kube

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/bgp"
)

// Two nodes' status writers, with only the agent's role, against a real
// API server: each keeps its own entry in status.nodes (state, why the
// session is down, prefixes); a peer left out says why; a peer the node no
// longer runs loses that node's entry and nothing else.
func TestStatusWriterNodes(t *testing.T) {
	env, scheme, admin := apiServer(t)
	ctx := context.Background()
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
		map[string]Problem{"tor-b": {Reason: v1alpha1.ReasonInvalidPeer, Message: `password Secret "md5" not found in the agents' namespace`}})
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

// The conditions of a node's entry, against a real API server with the
// agent's role: a session with refused routes says which and why
// (RoutesRefused, the hijack's reason first) and counts them; one closed
// on the limit says MaxPrefixesReached with the number; a peer left out
// for its address says Configured False with the reason. Expectations
// written by hand.
func TestStatusWriterConditions(t *testing.T) {
	env, scheme, admin := apiServer(t)
	ctx := context.Background()
	for _, name := range []string{"tor-c", "pod-peer"} {
		if err := admin.Create(ctx, &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1alpha1.BGPPeerSpec{Address: "192.0.2.1", PeerASN: 64500, LocalASN: 64512}}); err != nil {
			t.Fatal(err)
		}
	}
	w := &StatusWriter{Node: "node1", Client: env.AgentClient(t, scheme), Log: testr.New(t)}
	// view is the node1 entry: "state refused=N" and a line per
	// condition, "type status reason: message".
	view := func(peer string) []string {
		t.Helper()
		var p v1alpha1.BGPPeer
		if err := admin.Get(ctx, client.ObjectKey{Name: peer}, &p); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, n := range p.Status.Nodes {
			out = append(out, fmt.Sprintf("%s %s refused=%d", n.Node, n.State, n.PrefixesRefused))
			for _, c := range n.Conditions {
				out = append(out, fmt.Sprintf("%s %s %s: %s", c.Type, c.Status, c.Reason, c.Message))
			}
		}
		return out
	}
	want := func(peer string, lines ...string) {
		t.Helper()
		if got := view(peer); strings.Join(got, "\n") != strings.Join(lines, "\n") {
			t.Errorf("%s:\n%s\nwant:\n%s", peer, strings.Join(got, "\n"), strings.Join(lines, "\n"))
		}
	}
	node2 := []netip.Addr{netip.MustParseAddr("192.0.2.12")}
	hijack := bgp.PeerState{Name: "tor-c", State: "Established", Accepted: 1, MaxPrefixes: 100,
		RoutesAcknowledged: bgp.AckFalse, Unacknowledged: 57, Refused: []bgp.Refusal{
			{Prefix: netip.MustParsePrefix("10.244.2.0/25"), NextHop: netip.MustParseAddr("192.0.2.66"), Reason: bgp.RefusedInsidePodRange,
				Range: netip.MustParsePrefix("10.244.2.0/24"), Owner: "node2", OwnerAddrs: node2},
			{Prefix: netip.MustParsePrefix("10.244.2.0/24"), NextHop: netip.MustParseAddr("192.0.2.66"), Reason: bgp.RefusedNextHopNotOwner,
				Range: netip.MustParsePrefix("10.244.2.0/24"), Owner: "node2", OwnerAddrs: node2},
		}}
	w.Write(ctx, []bgp.PeerState{hijack}, map[string]Problem{"pod-peer": {Reason: v1alpha1.ReasonAddressInClusterRange,
		Message: "address 10.244.3.7 is inside node node3's pod range 10.244.3.0/24, where no router is"}})
	want("tor-c", "node1 Established refused=2",
		"Configured True PeerConfigured: the node runs a session with the peer",
		"RoutesRefused True NextHopNotOwner: 2 prefixes refused: 10.244.2.0/25 via 192.0.2.66: inside node node2's pod range 10.244.2.0/24; "+
			"10.244.2.0/24 via 192.0.2.66: node node2's pod range, whose next hop must be 192.0.2.12",
		"MaxPrefixesReached False WithinLimit: the peer sent no more than maxPrefixes (100)",
		"RoutesAcknowledged False Unacknowledged: 57 bytes of UPDATEs sent are not acknowledged by the router's TCP after 2 s: the router drops this node's segments (a firewall, TTL security one hop too strict), so the routes advertised have not arrived though the session shows Established")
	want("pod-peer", "node1 Idle refused=0",
		"Configured False AddressInClusterRange: address 10.244.3.7 is inside node node3's pod range 10.244.3.0/24, where no router is")

	// The limit hit: the session is down, nothing refused any more.
	w.Write(ctx, []bgp.PeerState{{Name: "tor-c", State: "Idle", MaxPrefixes: 100, MaxPrefixesReached: true,
		LastError: "maximum prefixes reached"}}, nil)
	want("tor-c", "node1 Idle refused=0",
		"Configured True PeerConfigured: the node runs a session with the peer",
		"RoutesRefused False NoneRefused: no route the peer sends is refused",
		"MaxPrefixesReached True MaxPrefixesReached: the peer sent more than 100 prefixes (maxPrefixes): the session was closed with a Cease and stays down until maxPrefixes changes",
		"RoutesAcknowledged Unknown NotEstablished: the session is not Established")
	want("pod-peer")
}
