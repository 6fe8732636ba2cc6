package v1alpha1_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/api/v1alpha1"
)

// bgpClient is apiClient whose scheme also knows the BGP kinds, whether or
// not the package's knownTypes lists them yet (adding a type twice is a
// no-op).
func bgpClient(t *testing.T) client.Client {
	t.Helper()
	c := apiClient(t)
	c.Scheme().AddKnownTypes(v1alpha1.GroupVersion,
		&v1alpha1.BGPPeer{}, &v1alpha1.BGPPeerList{},
		&v1alpha1.BGPAnnouncement{}, &v1alpha1.BGPAnnouncementList{})
	return c
}

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

// checkRefusal reports a refusal that did not happen or that does not carry
// every wanted piece of the API server's message.
func checkRefusal(t *testing.T, what string, err error, want []string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s accepted", what)
		return
	}
	t.Logf("%s: %v", what, err)
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s refused with %q, want a message containing %q", what, err, w)
		}
	}
}

// The API server accepts well-formed IPv4 and IPv6 peers, filling in the
// defaults, and refuses malformed ones with a message that says what to
// change.
func TestBGPPeerValidation(t *testing.T) {
	c := bgpClient(t)
	ctx := context.Background()

	accepted := []struct {
		name  string
		spec  v1alpha1.BGPPeerSpec
		check func(t *testing.T, got v1alpha1.BGPPeerSpec)
	}{
		{
			name: "v4-defaults",
			spec: v1alpha1.BGPPeerSpec{Address: "192.0.2.1", PeerASN: 64512, LocalASN: 64513},
			check: func(t *testing.T, got v1alpha1.BGPPeerSpec) {
				if got.Port != 179 {
					t.Errorf("port defaults to %d, want 179", got.Port)
				}
				if got.HoldTime == nil || got.HoldTime.Duration != 90*time.Second {
					t.Errorf("holdTime defaults to %v, want 90s", got.HoldTime)
				}
				if got.KeepaliveTime != nil || got.GracefulRestart != nil || got.PasswordSecret != nil {
					t.Errorf("optional fields filled in: %+v", got)
				}
			},
		},
		{
			name: "v6-everything",
			spec: v1alpha1.BGPPeerSpec{
				Address:         "2001:db8::1",
				Port:            1179,
				PeerASN:         4200000000,
				LocalASN:        4294967295,
				HoldTime:        dur(30 * time.Second),
				KeepaliveTime:   dur(10 * time.Second),
				PasswordSecret:  &v1alpha1.SecretKeyRef{Name: "router-md5", Key: "password"},
				EBGPMultiHop:    true,
				GracefulRestart: &v1alpha1.BGPGracefulRestart{Enabled: true},
				NodeSelector:    &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/hostname": "node1"}},
				SourceAddress:   "2001:db8::10",
			},
			check: func(t *testing.T, got v1alpha1.BGPPeerSpec) {
				if got.Port != 1179 || got.HoldTime.Duration != 30*time.Second || got.KeepaliveTime.Duration != 10*time.Second {
					t.Errorf("port %d, holdTime %v, keepaliveTime %v: want 1179, 30s, 10s", got.Port, got.HoldTime, got.KeepaliveTime)
				}
				if gr := got.GracefulRestart; gr == nil || !gr.Enabled || gr.RestartTime == nil || gr.RestartTime.Duration != 120*time.Second {
					t.Errorf("gracefulRestart %+v, want enabled with restartTime defaulted to 120s", gr)
				}
			},
		},
		{
			// ebgpMultiHop, the boolean of earlier releases, still goes
			// with a hop count.
			name: "ttl-and-retry",
			spec: v1alpha1.BGPPeerSpec{Address: "192.0.2.2", PeerASN: 64512, LocalASN: 64513, EBGPMultiHop: true,
				EBGPMultiHopTTL: ptr.To[int32](3), ConnectRetryTime: dur(5 * time.Second), IdleHoldTime: dur(0)},
			check: func(t *testing.T, got v1alpha1.BGPPeerSpec) {
				if !got.EBGPMultiHop || got.EBGPMultiHopTTL == nil || *got.EBGPMultiHopTTL != 3 ||
					got.ConnectRetryTime.Duration != 5*time.Second || got.IdleHoldTime == nil || got.IdleHoldTime.Duration != 0 {
					t.Errorf("got %+v; want ebgpMultiHop, ebgpMultiHopTTL 3, connectRetryTime 5s, idleHoldTime 0s kept", got)
				}
			},
		},
		{
			name: "gtsm",
			spec: v1alpha1.BGPPeerSpec{Address: "192.0.2.3", PeerASN: 64512, LocalASN: 64513, TTLSecurityHops: ptr.To[int32](1)},
			check: func(t *testing.T, got v1alpha1.BGPPeerSpec) {
				if got.TTLSecurityHops == nil || *got.TTLSecurityHops != 1 || got.EBGPMultiHopTTL != nil {
					t.Errorf("got %+v; want ttlSecurityHops 1 alone", got)
				}
			},
		},
	}
	for _, tc := range accepted {
		t.Run("accept/"+tc.name, func(t *testing.T) {
			if err := c.Create(ctx, &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: tc.name}, Spec: tc.spec}); err != nil {
				t.Fatalf("valid peer refused: %v", err)
			}
			var got v1alpha1.BGPPeer
			if err := c.Get(ctx, client.ObjectKey{Name: tc.name}, &got); err != nil {
				t.Fatal(err)
			}
			tc.check(t, got.Spec)
		})
	}

	good := func() v1alpha1.BGPPeerSpec {
		return v1alpha1.BGPPeerSpec{Address: "192.0.2.1", PeerASN: 64512, LocalASN: 64513}
	}
	refused := []struct {
		name   string
		mutate func(*v1alpha1.BGPPeerSpec)
		want   []string
	}{
		{"bad IP", func(s *v1alpha1.BGPPeerSpec) { s.Address = "192.0.2.300" }, []string{"spec.address", "must be an IPv4 or IPv6 address"}},
		{"hostname", func(s *v1alpha1.BGPPeerSpec) { s.Address = "router.example" }, []string{"spec.address", "must be an IPv4 or IPv6 address"}},
		{"holdTime 2s", func(s *v1alpha1.BGPPeerSpec) { s.HoldTime = dur(2 * time.Second) }, []string{"spec.holdTime", "holdTime must be from 3s to 65535s"}},
		{"holdTime beyond 16 bits", func(s *v1alpha1.BGPPeerSpec) { s.HoldTime = dur(65536 * time.Second) }, []string{"spec.holdTime", "holdTime must be from 3s to 65535s"}},
		{"keepalive equal to holdTime", func(s *v1alpha1.BGPPeerSpec) { s.KeepaliveTime = dur(90 * time.Second) }, []string{"keepaliveTime must be less than holdTime"}},
		{"keepalive above holdTime", func(s *v1alpha1.BGPPeerSpec) {
			s.HoldTime, s.KeepaliveTime = dur(9*time.Second), dur(time.Minute)
		}, []string{"keepaliveTime must be less than holdTime"}},
		// GoBGP, Berth's speaker, cannot run without a hold timer: it
		// would turn 0s into 90s.
		{"holdTime 0s", func(s *v1alpha1.BGPPeerSpec) {
			s.HoldTime, s.KeepaliveTime = dur(0), dur(0)
		}, []string{"spec.holdTime", "0s, no hold timer, is not supported", "spec.keepaliveTime", "keepaliveTime must be at least 1s"}},
		{"source of the other family", func(s *v1alpha1.BGPPeerSpec) { s.SourceAddress = "2001:db8::10" }, []string{"sourceAddress must be of the same family"}},
		{"bad source", func(s *v1alpha1.BGPPeerSpec) { s.SourceAddress = "node1" }, []string{"spec.sourceAddress", "must be an IPv4 or IPv6 address"}},
		{"peer ASN 0", func(s *v1alpha1.BGPPeerSpec) { s.PeerASN = 0 }, []string{"spec.peerASN", "greater than or equal to 1"}},
		{"local ASN 0", func(s *v1alpha1.BGPPeerSpec) { s.LocalASN = 0 }, []string{"spec.localASN", "greater than or equal to 1"}},
		{"ASN beyond 32 bits", func(s *v1alpha1.BGPPeerSpec) { s.PeerASN = 1 << 32 }, []string{"spec.peerASN", "less than or equal to 4294967295"}},
		{"port 65536", func(s *v1alpha1.BGPPeerSpec) { s.Port = 65536 }, []string{"spec.port", "less than or equal to 65535"}},
		{"restartTime 0s", func(s *v1alpha1.BGPPeerSpec) {
			s.GracefulRestart = &v1alpha1.BGPGracefulRestart{Enabled: true, RestartTime: dur(0)}
		}, []string{"spec.gracefulRestart.restartTime", "restartTime must be from 1s to 4095s"}},
		{"restartTime 4096s", func(s *v1alpha1.BGPPeerSpec) {
			s.GracefulRestart = &v1alpha1.BGPGracefulRestart{Enabled: true, RestartTime: dur(4096 * time.Second)}
		}, []string{"spec.gracefulRestart.restartTime", "restartTime must be from 1s to 4095s"}},
		{"ebgpMultiHopTTL 0", func(s *v1alpha1.BGPPeerSpec) { s.EBGPMultiHopTTL = ptr.To[int32](0) }, []string{"spec.ebgpMultiHopTTL", "greater than or equal to 1"}},
		{"ebgpMultiHopTTL 256", func(s *v1alpha1.BGPPeerSpec) { s.EBGPMultiHopTTL = ptr.To[int32](256) }, []string{"spec.ebgpMultiHopTTL", "less than or equal to 255"}},
		{"ttlSecurityHops 255", func(s *v1alpha1.BGPPeerSpec) { s.TTLSecurityHops = ptr.To[int32](255) }, []string{"spec.ttlSecurityHops", "less than or equal to 254"}},
		{"GTSM with multihop", func(s *v1alpha1.BGPPeerSpec) {
			s.TTLSecurityHops, s.EBGPMultiHop = ptr.To[int32](1), true
		}, []string{"ttlSecurityHops (GTSM"}},
		{"GTSM with a multihop TTL", func(s *v1alpha1.BGPPeerSpec) {
			s.TTLSecurityHops, s.EBGPMultiHopTTL = ptr.To[int32](2), ptr.To[int32](2)
		}, []string{"ttlSecurityHops (GTSM"}},
		{"connectRetryTime 1s", func(s *v1alpha1.BGPPeerSpec) { s.ConnectRetryTime = dur(time.Second) }, []string{"spec.connectRetryTime", "connectRetryTime must be from 2s to 3600s"}},
		{"idleHoldTime 2h", func(s *v1alpha1.BGPPeerSpec) { s.IdleHoldTime = dur(2 * time.Hour) }, []string{"spec.idleHoldTime", "idleHoldTime must be from 0s to 3600s"}},
		{"password without key", func(s *v1alpha1.BGPPeerSpec) {
			s.PasswordSecret = &v1alpha1.SecretKeyRef{Name: "router-md5"}
		}, []string{"spec.passwordSecret.key"}},
	}
	for _, tc := range refused {
		t.Run("refuse/"+tc.name, func(t *testing.T) {
			spec := good()
			tc.mutate(&spec)
			p := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "bad"}, Spec: spec}
			err := c.Create(ctx, p)
			if err == nil {
				_ = c.Delete(ctx, p)
			}
			checkRefusal(t, tc.name, err, tc.want)
		})
	}

	// A client that does not go through metav1.Duration can send any
	// string; the schema's pattern shows what a duration looks like (the
	// rule that needs a duration also fails, with a conversion error).
	t.Run("refuse/holdTime not a duration", func(t *testing.T) {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.GroupVersion.String(), "kind": "BGPPeer",
			"metadata": map[string]any{"name": "bad"},
			"spec":     map[string]any{"address": "192.0.2.1", "peerASN": int64(1), "localASN": int64(2), "holdTime": "ninety"},
		}}
		err := c.Create(ctx, u)
		if err == nil {
			_ = c.Delete(ctx, u)
		}
		checkRefusal(t, "holdTime \"ninety\"", err, []string{"spec.holdTime", "should match"})
	})
}

// The API server accepts well-formed announcements, filling in the
// aggregation lengths, and refuses communities that are neither numeric nor
// a defined alias.
func TestBGPAnnouncementValidation(t *testing.T) {
	c := bgpClient(t)
	ctx := context.Background()

	accepted := []struct {
		name  string
		spec  v1alpha1.BGPAnnouncementSpec
		check func(t *testing.T, got v1alpha1.BGPAnnouncementSpec)
	}{
		{
			name: "defaults",
			spec: v1alpha1.BGPAnnouncementSpec{},
			check: func(t *testing.T, got v1alpha1.BGPAnnouncementSpec) {
				if got.AggregationLength == nil || *got.AggregationLength != 32 {
					t.Errorf("aggregationLength defaults to %v, want 32", got.AggregationLength)
				}
				if got.AggregationLengthV6 == nil || *got.AggregationLengthV6 != 128 {
					t.Errorf("aggregationLengthV6 defaults to %v, want 128", got.AggregationLengthV6)
				}
				if got.LocalPref != nil {
					t.Errorf("localPref defaults to %d, want unset", *got.LocalPref)
				}
			},
		},
		{
			name: "everything",
			spec: v1alpha1.BGPAnnouncementSpec{
				IPPools:         []string{"lab", "public"},
				IPPoolSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"berth.dev/announce": "bgp"}}},
				PeerSelectors:   []metav1.LabelSelector{{MatchLabels: map[string]string{"rack": "r1"}}},
				NodeSelectors:   []metav1.LabelSelector{{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "node-role.kubernetes.io/edge", Operator: metav1.LabelSelectorOpExists}}}},
				Communities:     []v1alpha1.Community{"65000:100", "0:0", "65535:65535", "65000:1:2", "4294967295:4294967295:4294967295", "no-export-upstream"},
				CommunityAliases: []v1alpha1.CommunityAlias{
					{Name: "no-export-upstream", Value: "65000:666"},
					{Name: "blackhole_v2.large", Value: "64512:1:666"},
				},
				LocalPref:           ptr.To[int64](4294967295),
				AggregationLength:   ptr.To[int32](0),
				AggregationLengthV6: ptr.To[int32](64),
			},
			check: func(t *testing.T, got v1alpha1.BGPAnnouncementSpec) {
				if *got.AggregationLength != 0 || *got.AggregationLengthV6 != 64 {
					t.Errorf("aggregation lengths %d and %d, want 0 and 64 kept", *got.AggregationLength, *got.AggregationLengthV6)
				}
				if len(got.Communities) != 6 || len(got.CommunityAliases) != 2 {
					t.Errorf("communities %v, aliases %v: something was dropped", got.Communities, got.CommunityAliases)
				}
			},
		},
	}
	for _, tc := range accepted {
		t.Run("accept/"+tc.name, func(t *testing.T) {
			if err := c.Create(ctx, &v1alpha1.BGPAnnouncement{ObjectMeta: metav1.ObjectMeta{Name: tc.name}, Spec: tc.spec}); err != nil {
				t.Fatalf("valid announcement refused: %v", err)
			}
			var got v1alpha1.BGPAnnouncement
			if err := c.Get(ctx, client.ObjectKey{Name: tc.name}, &got); err != nil {
				t.Fatal(err)
			}
			tc.check(t, got.Spec)
		})
	}

	const badCommunity = "must be a standard community (two numbers 0-65535, e.g. 65000:100), a large community"
	refused := []struct {
		name string
		spec v1alpha1.BGPAnnouncementSpec
		want []string
	}{
		{"standard community beyond 16 bits", v1alpha1.BGPAnnouncementSpec{Communities: []v1alpha1.Community{"65000:100", "65536:1"}},
			[]string{"spec.communities[1]", badCommunity}},
		{"four numbers", v1alpha1.BGPAnnouncementSpec{Communities: []v1alpha1.Community{"1:2:3:4"}},
			[]string{"spec.communities[0]", badCommunity}},
		{"large community beyond 32 bits", v1alpha1.BGPAnnouncementSpec{Communities: []v1alpha1.Community{"4294967296:1:1"}},
			[]string{"spec.communities[0]", badCommunity}},
		{"empty part", v1alpha1.BGPAnnouncementSpec{Communities: []v1alpha1.Community{"65000:"}},
			[]string{"spec.communities[0]", badCommunity}},
		{"unknown alias", v1alpha1.BGPAnnouncementSpec{
			Communities:      []v1alpha1.Community{"gold"},
			CommunityAliases: []v1alpha1.CommunityAlias{{Name: "silver", Value: "65000:2"}},
		}, []string{"a name that is not numeric must be defined in communityAliases"}},
		{"alias without any aliases", v1alpha1.BGPAnnouncementSpec{Communities: []v1alpha1.Community{"gold"}},
			[]string{"a name that is not numeric must be defined in communityAliases"}},
		{"alias value beyond 16 bits", v1alpha1.BGPAnnouncementSpec{CommunityAliases: []v1alpha1.CommunityAlias{{Name: "gold", Value: "65536:1"}}},
			[]string{"spec.communityAliases[0].value", "must be a standard community"}},
		{"alias value that is a name", v1alpha1.BGPAnnouncementSpec{CommunityAliases: []v1alpha1.CommunityAlias{{Name: "gold", Value: "silver"}}},
			[]string{"spec.communityAliases[0].value", "must be a standard community"}},
		{"alias name with a colon", v1alpha1.BGPAnnouncementSpec{CommunityAliases: []v1alpha1.CommunityAlias{{Name: "65000:1", Value: "65000:2"}}},
			[]string{"spec.communityAliases[0].name", "should match"}},
		{"aggregationLength 33", v1alpha1.BGPAnnouncementSpec{AggregationLength: ptr.To[int32](33)},
			[]string{"spec.aggregationLength", "less than or equal to 32"}},
		{"aggregationLengthV6 129", v1alpha1.BGPAnnouncementSpec{AggregationLengthV6: ptr.To[int32](129)},
			[]string{"spec.aggregationLengthV6", "less than or equal to 128"}},
		{"localPref beyond 32 bits", v1alpha1.BGPAnnouncementSpec{LocalPref: ptr.To[int64](1 << 32)},
			[]string{"spec.localPref", "less than or equal to 4294967295"}},
	}
	for _, tc := range refused {
		t.Run("refuse/"+tc.name, func(t *testing.T) {
			a := &v1alpha1.BGPAnnouncement{ObjectMeta: metav1.ObjectMeta{Name: "bad"}, Spec: tc.spec}
			err := c.Create(ctx, a)
			if err == nil {
				_ = c.Delete(ctx, a)
			}
			checkRefusal(t, tc.name, err, tc.want)
		})
	}
}

// Each agent server-side applies its own status.nodes entry under its own
// field manager; the list merges by node, so one agent's apply never removes
// another's entry, and an agent that drops its entry removes only its own.
func TestBGPPeerStatusApply(t *testing.T) {
	c := bgpClient(t)
	ctx := context.Background()
	peer := &v1alpha1.BGPPeer{
		ObjectMeta: metav1.ObjectMeta{Name: "tor"},
		Spec:       v1alpha1.BGPPeerSpec{Address: "192.0.2.1", PeerASN: 64512, LocalASN: 64513},
	}
	if err := c.Create(ctx, peer); err != nil {
		t.Fatal(err)
	}

	// entry is what an agent applies for its node; nil applies an empty list.
	entry := func(node, state string, advertised int64) map[string]any {
		return map[string]any{
			"node": node, "state": state, "prefixesAdvertised": advertised,
			"lastTransition": "2026-01-02T03:04:05Z", "updated": "2026-01-02T03:04:06Z",
		}
	}
	steps := []struct {
		name    string
		manager string
		entry   map[string]any
		want    map[string]v1alpha1.BGPSessionState // node -> state after the step
		refuse  string                              // a message the apply must be refused with
	}{
		{"node1 comes up", "berth-agent-node1", entry("node1", "Established", 3),
			map[string]v1alpha1.BGPSessionState{"node1": "Established"}, ""},
		{"node2 connects: node1 kept", "berth-agent-node2", entry("node2", "Connect", 0),
			map[string]v1alpha1.BGPSessionState{"node1": "Established", "node2": "Connect"}, ""},
		{"node2 established", "berth-agent-node2", entry("node2", "Established", 3),
			map[string]v1alpha1.BGPSessionState{"node1": "Established", "node2": "Established"}, ""},
		{"node1 loses its session: node2 kept", "berth-agent-node1", entry("node1", "Active", 0),
			map[string]v1alpha1.BGPSessionState{"node1": "Active", "node2": "Established"}, ""},
		{"an unknown state is refused", "berth-agent-node1", entry("node1", "Up", 0),
			map[string]v1alpha1.BGPSessionState{"node1": "Active", "node2": "Established"}, "Unsupported value: \"Up\""},
		{"node1 no longer peers: only its entry goes", "berth-agent-node1", nil,
			map[string]v1alpha1.BGPSessionState{"node2": "Established"}, ""},
	}
	for _, st := range steps {
		nodes := []any{}
		if st.entry != nil {
			nodes = append(nodes, st.entry)
		}
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.GroupVersion.String(), "kind": "BGPPeer",
			"metadata": map[string]any{"name": peer.Name},
			"status":   map[string]any{"nodes": nodes},
		}}
		err := c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(st.manager))
		switch {
		case st.refuse == "" && err != nil:
			t.Fatalf("%s: apply: %v", st.name, err)
		case st.refuse != "":
			checkRefusal(t, st.name, err, []string{"status.nodes[0].state", st.refuse})
		}

		var got v1alpha1.BGPPeer
		if err := c.Get(ctx, client.ObjectKeyFromObject(peer), &got); err != nil {
			t.Fatal(err)
		}
		have := map[string]v1alpha1.BGPSessionState{}
		for _, n := range got.Status.Nodes {
			have[n.Node] = n.State
		}
		if len(have) != len(st.want) {
			t.Errorf("%s: status.nodes %v, want %v", st.name, have, st.want)
			continue
		}
		for node, state := range st.want {
			if have[node] != state {
				t.Errorf("%s: status.nodes %v, want %v", st.name, have, st.want)
				break
			}
		}
		if got.Spec.Address != peer.Spec.Address || got.Spec.Port != 179 {
			t.Errorf("%s: a status apply changed the spec: %+v", st.name, got.Spec)
		}
	}
}
