package v1alpha1_test

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthnet/berth/api/v1alpha1"
)

// The API server takes a well-formed L2Announcement and refuses interface
// patterns with characters no interface name or pattern has.
func TestL2AnnouncementValidation(t *testing.T) {
	c := apiClient(t)
	ctx := context.Background()
	good := &v1alpha1.L2Announcement{
		ObjectMeta: metav1.ObjectMeta{Name: "lan"},
		Spec: v1alpha1.L2AnnouncementSpec{
			IPPools:       []string{"lab"},
			NodeSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"node-role.kubernetes.io/edge": ""}}},
			Interfaces:    []string{"eth0", "bond*", "enp?s0"},
		},
	}
	if err := c.Create(ctx, good); err != nil {
		t.Fatalf("valid L2Announcement refused: %v", err)
	}
	bad := &v1alpha1.L2Announcement{ObjectMeta: metav1.ObjectMeta{Name: "bad"},
		Spec: v1alpha1.L2AnnouncementSpec{Interfaces: []string{"eth0; rm -rf /"}}}
	if err := c.Create(ctx, bad); err == nil || !strings.Contains(err.Error(), "spec.interfaces[0]") {
		t.Errorf("bad interface pattern: %v; want a refusal naming spec.interfaces[0]", err)
	}
}
