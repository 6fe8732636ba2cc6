package v1alpha1_test

import (
	"context"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/api/v1alpha1"
)

// maxPrefixes: unset stays unset (the agents take 10000), 0 (no limit)
// is kept as 0, not dropped, the 32-bit maximum is accepted; negative and
// beyond 32 bits are refused.
func TestBGPPeerMaxPrefixes(t *testing.T) {
	c := bgpClient(t)
	ctx := context.Background()
	for i, set := range []*int64{nil, ptr.To[int64](0), ptr.To[int64](1), ptr.To[int64](4294967295)} {
		name := fmt.Sprintf("max-prefixes-%d", i)
		p := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1alpha1.BGPPeerSpec{Address: "192.0.2.1", PeerASN: 64512, LocalASN: 64513, MaxPrefixes: set}}
		if err := c.Create(ctx, p); err != nil {
			t.Errorf("maxPrefixes %v refused: %v", ptr.Deref(set, -1), err)
			continue
		}
		var got v1alpha1.BGPPeer
		if err := c.Get(ctx, client.ObjectKey{Name: name}, &got); err != nil {
			t.Fatal(err)
		}
		if (got.Spec.MaxPrefixes == nil) != (set == nil) || set != nil && *got.Spec.MaxPrefixes != *set {
			t.Errorf("maxPrefixes %v stored as %v", ptr.Deref(set, -1), ptr.Deref(got.Spec.MaxPrefixes, -1))
		}
	}
	for _, bad := range []struct {
		v    int64
		want string
	}{{-1, "greater than or equal to 0"}, {4294967296, "less than or equal to 4294967295"}} {
		p := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "max-prefixes-bad"},
			Spec: v1alpha1.BGPPeerSpec{Address: "192.0.2.1", PeerASN: 64512, LocalASN: 64513, MaxPrefixes: ptr.To(bad.v)}}
		checkRefusal(t, fmt.Sprintf("maxPrefixes %d", bad.v), c.Create(ctx, p), []string{"spec.maxPrefixes", bad.want})
	}
}
