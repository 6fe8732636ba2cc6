package kube

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthnet/berth/netpol"
)

func TestPodOf(t *testing.T) {
	base := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "a", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{
			{Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {ContainerPort: 9}}},
			{Ports: []corev1.ContainerPort{{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}, {Name: "http", ContainerPort: 1}}},
		}},
		Status: corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: "10.244.1.5"}, {IP: "fd00::5"}}},
	}
	base.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
	base.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "b"}}
	trimmed, err := TrimPod(&base)
	if err != nil {
		t.Fatal(err)
	}
	tp := trimmed.(*corev1.Pod)
	if len(tp.ManagedFields) != 0 || tp.Spec.Containers[0].Env != nil {
		t.Errorf("TrimPod kept %+v", tp)
	}
	got, ok := PodOf(tp)
	want := netpol.Pod{Namespace: "x", Name: "a", Labels: map[string]string{"app": "web"}, Node: "n1",
		IPs:        []netip.Addr{netip.MustParseAddr("10.244.1.5"), netip.MustParseAddr("fd00::5")},
		NamedPorts: map[string]netpol.ContainerPort{"http": {Port: 8080}, "dns": {Protocol: corev1.ProtocolUDP, Port: 53}}}
	eq := cmpopts.EquateComparable(netip.Addr{})
	if !ok || !cmp.Equal(got, want, eq) {
		t.Errorf("PodOf: %v %s", ok, cmp.Diff(want, got, eq))
	}
	for name, mut := range map[string]func(*corev1.Pod){
		"host network": func(p *corev1.Pod) { p.Spec.HostNetwork = true },
		"no address":   func(p *corev1.Pod) { p.Status.PodIPs = nil },
		"finished":     func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded },
	} {
		p := base.DeepCopy()
		mut(p)
		if _, ok := PodOf(p); ok {
			t.Errorf("%s: PodOf took the pod", name)
		}
	}
	node := corev1.Node{Spec: corev1.NodeSpec{PodCIDRs: []string{"10.244.1.0/24", "fd00:1::/64"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.1"}, {Type: corev1.NodeHostName, Address: "n1"}}}}
	ips, cidrs := NodeAddrs(&node)
	if len(ips) != 1 || ips[0].String() != "192.0.2.1" || len(cidrs) != 2 {
		t.Errorf("NodeAddrs: %v %v", ips, cidrs)
	}
}
