package v1alpha1_test

import (
	"context"
	"fmt"
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
			Interfaces:    []string{"eth0", "bond*", "enp?s0", "eth[0-3]", "v[[]x"},
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

// Interface patterns whose brackets do not pair up (which would match no
// interface) are refused by the API server, with a message that says what
// to write.
func TestL2AnnouncementUnpairedBrackets(t *testing.T) {
	c := apiClient(t)
	ctx := context.Background()
	for i, p := range []string{"eth[", "eth[]", "eth]x[", "bond[0-3"} {
		bad := &v1alpha1.L2Announcement{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("brackets-%d", i)},
			Spec: v1alpha1.L2AnnouncementSpec{Interfaces: []string{"eth0", p}}}
		err := c.Create(ctx, bad)
		if err == nil || !strings.Contains(err.Error(), "spec.interfaces") || !strings.Contains(err.Error(), "like eth[0-3]") {
			t.Errorf("interfaces [eth0 %s]: %v; want a refusal naming spec.interfaces and saying what to write", p, err)
		}
	}
}

// ValidateInterfaces names the first pattern that does not parse, by
// index, including those the API server's rule lets through.
func TestValidateInterfaces(t *testing.T) {
	for _, c := range []struct {
		patterns []string
		want     string // "" for valid
	}{
		{nil, ""},
		{[]string{"eth0", "bond*", "enp?s0", "eth[0-3]", "eth[^0]", "v[[]x", "eth]"}, ""},
		{[]string{"eth0", "eth["}, `interfaces[1] "eth[" is not a valid pattern (syntax error in pattern): brackets must pair up around a class, like eth[0-3]`},
		{[]string{"eth[a-]"}, `interfaces[0] "eth[a-]" is not a valid pattern (syntax error in pattern): brackets must pair up around a class, like eth[0-3]`},
		{[]string{"[^]", "eth["}, `interfaces[0] "[^]" is not a valid pattern (syntax error in pattern): brackets must pair up around a class, like eth[0-3]`},
	} {
		spec := v1alpha1.L2AnnouncementSpec{Interfaces: c.patterns}
		err := spec.ValidateInterfaces()
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("%q: %q; want %q", c.patterns, got, c.want)
		}
	}
}
