package v1alpha1_test

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/api/v1alpha1"
)

// The API server itself refuses malformed pools, with a message that says
// what is wrong, and accepts every well-formed kind of address.
func TestIPPoolValidation(t *testing.T) {
	c := apiClient(t)
	ctx := context.Background()
	create := func(name string, addrs ...v1alpha1.Address) error {
		return c.Create(ctx, &v1alpha1.IPPool{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       v1alpha1.IPPoolSpec{Addresses: addrs},
		})
	}

	if err := create("good", "192.0.2.0/24", "2001:db8::/120", "198.51.100.10-198.51.100.20", "2001:db8:1::1 - 2001:db8:1::9", "203.0.113.7/32"); err != nil {
		t.Fatalf("valid pool refused: %v", err)
	}
	var got v1alpha1.IPPool
	if err := c.Get(ctx, client.ObjectKey{Name: "good"}, &got); err != nil {
		t.Fatal(err)
	}
	if got.Spec.AutoAssign == nil || !*got.Spec.AutoAssign {
		t.Errorf("autoAssign defaults to %v, want true", got.Spec.AutoAssign)
	}

	for _, tc := range []struct {
		addr v1alpha1.Address
		want string
	}{
		{"banana", "must be a CIDR"},
		{"192.0.2.0/33", "must be a CIDR"},
		{"192.0.2.1/24", "host bits set"},
		{"192.0.2.9-192.0.2.1", "first address must not be after the last"},
		{"10.0.1.0-10.0.0.255", "first address must not be after the last"},
		{"192.0.2.1-2001:db8::1", "of one family"},
		{"192.0.2.1-192.0.2.2-192.0.2.3", "must be a CIDR"},
	} {
		err := create("bad", tc.addr)
		if err == nil {
			t.Errorf("%q accepted", tc.addr)
			_ = c.Delete(ctx, &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "bad"}})
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q refused with %q, want a message containing %q", tc.addr, err, tc.want)
		}
	}
	if err := create("empty"); err == nil || !strings.Contains(err.Error(), "spec.addresses") {
		t.Errorf("pool without addresses: %v, want a refusal naming spec.addresses", err)
	}
}
