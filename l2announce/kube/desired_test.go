package kube

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/l2announce"
)

func lbService(ns, name string, policy corev1.ServiceExternalTrafficPolicy, class *string, ips ...string) corev1.Service {
	s := corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: policy, LoadBalancerClass: class}}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return s
}

func slice(ns, svc string, ready map[string]bool) discoveryv1.EndpointSlice {
	s := discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: svc + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: svc}}}
	for node, r := range ready {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{NodeName: &node, Conditions: discoveryv1.EndpointConditions{Ready: &r}})
	}
	return s
}

func TestBuild(t *testing.T) {
	other := "example.com/lb"
	o := Objects{
		ServeUnclassed: true,
		Pools: []v1alpha1.IPPool{
			{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.Address{"198.18.0.200-198.18.0.210"}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "bgp", Labels: map[string]string{"announce": "bgp"}}, Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.Address{"203.0.113.0/28"}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "v6", Labels: map[string]string{"announce": "l2"}}, Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.Address{"2001:db8::/120"}}},
		},
		Announcements: []v1alpha1.L2Announcement{
			{ObjectMeta: metav1.ObjectMeta{Name: "by-name"}, Spec: v1alpha1.L2AnnouncementSpec{IPPools: []string{"lan"}, Interfaces: []string{"eth*"},
				NodeSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"edge": "yes"}}}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "by-label"}, Spec: v1alpha1.L2AnnouncementSpec{IPPoolSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"announce": "l2"}}}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "broken"}, Spec: v1alpha1.L2AnnouncementSpec{NodeSelectors: []metav1.LabelSelector{{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Sideways"}}}}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "bad-glob"}, Spec: v1alpha1.L2AnnouncementSpec{IPPools: []string{"lan"}, Interfaces: []string{"eth["}}},
		},
		Services: []corev1.Service{
			lbService("a", "web", corev1.ServiceExternalTrafficPolicyCluster, nil, "198.18.0.200", "2001:db8::5"),
			lbService("a", "local", corev1.ServiceExternalTrafficPolicyLocal, nil, "198.18.0.201"),
			// Sharing an address: Local and Local -> nodes with both.
			lbService("b", "s1", corev1.ServiceExternalTrafficPolicyLocal, nil, "198.18.0.202"),
			lbService("b", "s2", corev1.ServiceExternalTrafficPolicyLocal, nil, "198.18.0.202"),
			lbService("a", "bgp-only", corev1.ServiceExternalTrafficPolicyCluster, nil, "203.0.113.3"),
			lbService("a", "not-ours", corev1.ServiceExternalTrafficPolicyCluster, &other, "198.18.0.203"),
			lbService("a", "outside", corev1.ServiceExternalTrafficPolicyCluster, nil, "192.0.2.1"),
		},
		Slices: []discoveryv1.EndpointSlice{
			slice("a", "local", map[string]bool{"node1": true, "node2": false}),
			slice("b", "s1", map[string]bool{"node1": true, "node3": true}),
			slice("b", "s2", map[string]bool{"node3": true}),
		},
		Nodes: []corev1.Node{
			{ObjectMeta: metav1.ObjectMeta{Name: "node1", Labels: map[string]string{"edge": "yes"}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "node2"}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionTrue}}}},
		},
	}
	d := Build(o)
	var got []string
	for _, a := range d.Addresses {
		var groups []string
		for _, g := range a.Groups {
			groups = append(groups, g.Announcement+"/"+g.Pool)
		}
		got = append(got, fmt.Sprintf("%s %v %v local=%v", a.Addr, a.Services, groups, a.Local))
	}
	want := []string{
		"198.18.0.200 [a/web] [by-name/lan] local=map[]",
		"198.18.0.201 [a/local] [by-name/lan] local=map[node1:true]",
		"198.18.0.202 [b/s1 b/s2] [by-name/lan] local=map[node3:true]",
		"2001:db8::5 [a/web] [by-label/v6] local=map[]",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("addresses:\n%s\nwant\n%s", got, want)
	}
	if d.Addresses[0].Local != nil {
		t.Error("policy Cluster has a Local set")
	}
	wantProblems := []string{
		`L2Announcement bad-glob: interfaces[0] "eth[" is not a valid pattern (syntax error in pattern): brackets must pair up around a class, like eth[0-3]`,
		`L2Announcement broken: nodeSelectors: `,
	}
	if len(d.Problems) != len(wantProblems) {
		t.Errorf("problems: %q; want %q", d.Problems, wantProblems)
	}
	for i := range d.Problems {
		if i < len(wantProblems) && !strings.HasPrefix(d.Problems[i], wantProblems[i]) {
			t.Errorf("problem %d: %q; want it to start %q", i, d.Problems[i], wantProblems[i])
		}
	}
	g := d.Addresses[0].Groups[0]
	if g.Key != l2announce.GroupKey("by-name", "lan") || fmt.Sprint(g.Interfaces, g.Samples) != "[eth*] [198.18.0.200]" ||
		!g.Selects(map[string]string{"edge": "yes"}) || g.Selects(nil) {
		t.Errorf("group %+v", g)
	}
	if fmt.Sprint(d.Nodes) != "[{node1 map[edge:yes] false} {node2 map[] true}]" {
		t.Errorf("nodes: %v", d.Nodes)
	}
}

// The condition gathers one part per address, for people; its status and
// reason come from the records' states.
func TestConditionFromRecords(t *testing.T) {
	v4, v6 := netip.MustParseAddr("198.18.0.200"), netip.MustParseAddr("2001:db8::5")
	recs := map[netip.Addr]Record{
		v4: {State: l2announce.Announcing, Node: "node1", Interfaces: []string{"eth0"}},
		v6: {State: l2announce.NoAnnouncer, Node: "node2"},
	}
	if c := condition(recs); c.Status != metav1.ConditionFalse || c.Reason != ReasonNoAnnouncer {
		t.Errorf("one address without announcer: %+v", c)
	}
	recs[v6] = Record{State: l2announce.Announcing, Node: "node2", Interfaces: []string{"eth0"}}
	if c := condition(recs); c.Status != metav1.ConditionTrue || c.Reason != ReasonAnnounced ||
		c.Message != "198.18.0.200 announced by node1 on eth0; 2001:db8::5 announced by node2 on eth0" {
		t.Errorf("both announced: %+v", c)
	}
	recs[v4] = Record{State: l2announce.Conflict, Node: "node1", Interfaces: []string{"eth0"}, ConflictMAC: "02:00:00:00:00:09"}
	if c := condition(recs); c.Status != metav1.ConditionFalse || c.Reason != ReasonAddressConflict ||
		c.Message != "198.18.0.200 is in use by 02:00:00:00:00:09 on the LAN (node1 probed on eth0), so it is not announced; 2001:db8::5 announced by node2 on eth0" {
		t.Errorf("conflict: %+v", c)
	}
}

// The records read back as written; a broken annotation is an error that
// names it, and counts as saying nothing.
func TestRecordsRoundTrip(t *testing.T) {
	svc := lbService("a", "web", "", nil, "198.18.0.200", "2001:db8::5")
	recs := map[netip.Addr]Record{
		netip.MustParseAddr("2001:db8::5"):  {State: l2announce.Conflict, Node: "node2", Interfaces: []string{"eth1"}, ConflictMAC: "02:00:00:00:00:09"},
		netip.MustParseAddr("198.18.0.200"): {State: l2announce.Announcing, Node: "node1", Interfaces: []string{"bond0", "eth0"}},
	}
	svc.Annotations = map[string]string{AnnotationState: formatRecords(recs)}
	want := `{"198.18.0.200":{"state":"Announcing","node":"node1","interfaces":["bond0","eth0"]},"2001:db8::5":{"state":"Conflict","node":"node2","interfaces":["eth1"],"conflictMAC":"02:00:00:00:00:09"}}`
	if got := svc.Annotations[AnnotationState]; got != want {
		t.Errorf("annotation\n%s\nwant\n%s", got, want)
	}
	back, err := Records(&svc)
	if err != nil || fmt.Sprint(back) != fmt.Sprint(recs) {
		t.Errorf("read back %v, %v; want %v", back, err, recs)
	}
	for _, bad := range []string{`announced by node1`, `{"nonsense":{"state":"Announcing"}}`, `{"198.18.0.200":{"state":"Maybe"}}`} {
		svc.Annotations[AnnotationState] = bad
		got, err := Records(&svc)
		if err == nil || len(got) != 0 || !strings.Contains(err.Error(), AnnotationState) {
			t.Errorf("annotation %q: %v, %v; want an error naming %s and no records", bad, got, err, AnnotationState)
		}
	}
}

// Whether a takeover skips the conflict probe (Announced) and what the
// Services say now (Reported) come from the annotation: the condition's
// message, however worded, changes neither.
func TestDecisionsIgnoreMessages(t *testing.T) {
	pools := []v1alpha1.IPPool{{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.Address{"198.18.0.200-198.18.0.210"}}}}
	anns := []v1alpha1.L2Announcement{{ObjectMeta: metav1.ObjectMeta{Name: "lan"}}}
	announced := `{"198.18.0.200":{"state":"Announcing","node":"node2","interfaces":["eth0"]}}`
	conflict := `{"198.18.0.200":{"state":"Conflict","node":"node2","interfaces":["eth0"],"conflictMAC":"02:00:00:00:00:09"}}`
	for _, c := range []struct {
		name, annotation, message string
		announced                 bool
		reported                  *l2announce.Report
	}{
		{"announced, usual words", announced, "198.18.0.200 announced by node2 on eth0", true,
			&l2announce.Report{Addr: netip.MustParseAddr("198.18.0.200"), State: l2announce.Announcing, Node: "node2", Interfaces: []string{"eth0"}}},
		{"announced, other words", announced, "198.18.0.200 wird von node2 auf eth0 bekanntgegeben", true,
			&l2announce.Report{Addr: netip.MustParseAddr("198.18.0.200"), State: l2announce.Announcing, Node: "node2", Interfaces: []string{"eth0"}}},
		{"announced, no message", announced, "", true,
			&l2announce.Report{Addr: netip.MustParseAddr("198.18.0.200"), State: l2announce.Announcing, Node: "node2", Interfaces: []string{"eth0"}}},
		{"no record, message says announced", "", "198.18.0.200 announced by node2 on eth0", false, nil},
		{"conflict, message says announced", conflict, "198.18.0.200 announced by node2 on eth0", false,
			&l2announce.Report{Addr: netip.MustParseAddr("198.18.0.200"), State: l2announce.Conflict, Node: "node2", Interfaces: []string{"eth0"}, ConflictMAC: net.HardwareAddr{2, 0, 0, 0, 0, 9}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			svc := lbService("a", "web", corev1.ServiceExternalTrafficPolicyCluster, nil, "198.18.0.200")
			if c.annotation != "" {
				svc.Annotations = map[string]string{AnnotationState: c.annotation}
			}
			svc.Status.Conditions = []metav1.Condition{{Type: ConditionAnnounced, Status: metav1.ConditionTrue, Reason: ReasonAnnounced, Message: c.message}}
			d := Build(Objects{ServeUnclassed: true, Pools: pools, Announcements: anns, Services: []corev1.Service{svc}})
			if len(d.Addresses) != 1 {
				t.Fatalf("addresses %v; want 198.18.0.200", d.Addresses)
			}
			a := d.Addresses[0]
			if a.Announced != c.announced {
				t.Errorf("Announced %v; want %v", a.Announced, c.announced)
			}
			if fmt.Sprint(a.Reported) != fmt.Sprint(c.reported) {
				t.Errorf("Reported %+v; want %+v", a.Reported, c.reported)
			}
		})
	}
}
