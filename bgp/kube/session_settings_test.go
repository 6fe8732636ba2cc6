package kube

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthnet/berth/api/v1alpha1"
)

// A BGPPeer's TTL and reconnection settings as the speaker runs them, and
// the values it cannot run refused with what to change.
func TestPeerSessionSettings(t *testing.T) {
	base := func() *v1alpha1.BGPPeer {
		return &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "r"},
			Spec: v1alpha1.BGPPeerSpec{Address: "192.0.2.1", PeerASN: 64500, LocalASN: 64512}}
	}
	type want struct {
		ttlOut, ttlMin uint8
		retry, idle    time.Duration
	}
	for _, c := range []struct {
		name string
		edit func(*v1alpha1.BGPPeerSpec)
		want want
	}{
		{"defaults", func(*v1alpha1.BGPPeerSpec) {}, want{0, 0, 2 * time.Second, 0}},
		{"ebgpMultiHop alone (the earlier boolean)", func(s *v1alpha1.BGPPeerSpec) { s.EBGPMultiHop = true }, want{255, 0, 2 * time.Second, 0}},
		{"ebgpMultiHopTTL 3", func(s *v1alpha1.BGPPeerSpec) { s.EBGPMultiHopTTL = ptr(int32(3)) }, want{3, 0, 2 * time.Second, 0}},
		{"both: the count wins", func(s *v1alpha1.BGPPeerSpec) {
			s.EBGPMultiHop, s.EBGPMultiHopTTL = true, ptr(int32(4))
		}, want{4, 0, 2 * time.Second, 0}},
		{"GTSM directly connected", func(s *v1alpha1.BGPPeerSpec) { s.TTLSecurityHops = ptr(int32(1)) }, want{255, 255, 2 * time.Second, 0}},
		{"GTSM three hops", func(s *v1alpha1.BGPPeerSpec) { s.TTLSecurityHops = ptr(int32(3)) }, want{255, 253, 2 * time.Second, 0}},
		{"timers", func(s *v1alpha1.BGPPeerSpec) {
			s.ConnectRetryTime, s.IdleHoldTime = &metav1.Duration{Duration: 10 * time.Second}, &metav1.Duration{Duration: 30 * time.Second}
		}, want{0, 0, 10 * time.Second, 30 * time.Second}},
	} {
		p := base()
		c.edit(&p.Spec)
		got, err := peer(p, nil)
		if err != nil {
			t.Errorf("%s: refused: %v", c.name, err)
			continue
		}
		out, min := got.TTL()
		if g := (want{out, min, got.Retry(), got.IdleHold}); g != c.want {
			t.Errorf("%s: TTL out %d, least in %d, connect retry %s, idle hold %s; want %+v", c.name, out, min, got.Retry(), got.IdleHold, c.want)
		}
	}
	for _, c := range []struct {
		name string
		edit func(*v1alpha1.BGPPeerSpec)
		want string
	}{
		{"GTSM with multihop (stored before the CRD rule)", func(s *v1alpha1.BGPPeerSpec) {
			s.EBGPMultiHop, s.TTLSecurityHops = true, ptr(int32(1))
		}, "ttlSecurityHops and ebgpMultiHop"},
		{"connect retry 1.5s", func(s *v1alpha1.BGPPeerSpec) {
			s.ConnectRetryTime = &metav1.Duration{Duration: 1500 * time.Millisecond}
		}, "connectRetryTime 1.5s"},
		{"connect retry 0s", func(s *v1alpha1.BGPPeerSpec) { s.ConnectRetryTime = &metav1.Duration{} }, "connectRetryTime 0s"},
		{"idle hold 2.5s", func(s *v1alpha1.BGPPeerSpec) { s.IdleHoldTime = &metav1.Duration{Duration: 2500 * time.Millisecond} }, "idleHoldTime 2.5s: use whole seconds"},
		{"multihop TTL 0", func(s *v1alpha1.BGPPeerSpec) { s.EBGPMultiHopTTL = ptr(int32(0)) }, "ebgpMultiHopTTL 0"},
	} {
		p := base()
		c.edit(&p.Spec)
		if _, err := peer(p, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v; want one containing %q", c.name, err, c.want)
		}
	}
}
