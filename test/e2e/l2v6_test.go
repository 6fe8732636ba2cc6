package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/berthnet/berth/l2announce"
	l2kube "github.com/berthnet/berth/l2announce/kube"
	"github.com/berthnet/berth/lab"
	"github.com/berthnet/berth/test/labtest"
)

// An IPv6 LoadBalancer address on the dual-stack lab's LAN: a SingleStack
// IPv6 Service gets an address from the lab's IPv6 pool, a node announces
// it and says so in the Service's condition, the LAN client's own kernel
// resolves it with NDP to that node's MAC, and HTTP through it reaches an
// http-echo pod at the pod's IPv6 address, through the service proxy.
func TestL2AnnouncementIPv6(t *testing.T) {
	t.Parallel()
	l, ctx := labtest.Start(t, 5*time.Minute)
	cfg := l.Config(t)
	kube := l.Client(t)
	client := l.Namespace(t, "client")
	const ns, port = "l2v6", 8080

	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "http"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "http", Namespace: ns},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To(int32(2)), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{lab.EchoContainer("http", lab.EchoImage, port, corev1.ProtocolTCP)}}}},
	}
	if _, err := kube.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods, err := lab.WaitEchoPods(ctx, kube, ns, "app=http", 2, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// Each pod has an address of each family, IPv4 first.
	podIP6 := map[string]string{}
	for _, p := range pods {
		if len(p.Status.PodIPs) != 2 || !netip.MustParseAddr(p.Status.PodIPs[0].IP).Is4() || !netip.MustParseAddr(p.Status.PodIPs[1].IP).Is6() {
			t.Fatalf("pod %s has IPs %v; want an IPv4 and an IPv6 address", p.Name, p.Status.PodIPs)
		}
		podIP6[p.Name] = p.Status.PodIPs[1].IP
	}

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "http", Namespace: ns},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: labels,
			IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicySingleStack), IPFamilies: []corev1.IPFamily{corev1.IPv6Protocol},
			Ports: []corev1.ServicePort{{Name: "main", Port: port, TargetPort: intstr.FromString("serve")}}},
	}
	if _, err := kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	addr, msg, err := lab.WaitLoadBalancer(ctx, kube, ns, "http", 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	first, last := cfg.LBPool6()
	if !addr.Is6() || addr.Less(first) || last.Less(addr) {
		t.Fatalf("Service address %s: want one of the IPv6 pool %s-%s", addr, first, last)
	}
	// The Service's layer-2 state (data, written with the condition)
	// names the announcing node.
	cur, err := kube.CoreV1().Services(ns).Get(ctx, "http", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	owner := announcer(t, cfg, addr, cur)
	t.Logf("%s: %s", lab.ConditionL2Announced, msg)

	// HTTP to [addr]:port from the LAN client reaches a pod of the
	// Service at its IPv6 address: the node's service proxy forwarded it.
	hostport := net.JoinHostPort(addr.String(), fmt.Sprint(port))
	r := eventually(t, func() (lab.EchoReply, error) { return lab.EchoFromAddr(ctx, client, hostport) })
	want, ok := podIP6[r.Pod]
	if !ok || !slices.Contains(r.PodIPs, want) {
		t.Fatalf("http://%s answered by pod %q with IPs %v; want a pod of the Service (%v)", hostport, r.Pod, r.PodIPs, podIP6)
	}
	endpoints := serviceEndpoints(ctx, t, kube, ns, "http")
	if !slices.Contains(endpoints, want) {
		t.Errorf("pod %s's IPv6 address %s is not among the Service's endpoints %v", r.Pod, want, endpoints)
	}
	t.Logf("http://%s answered by pod %s (%s) on %s, client seen as %s", hostport, r.Pod, want, r.Node, r.Client)

	// The client's kernel resolved the address with NDP to the node the
	// condition names.
	ownerMAC := ""
	if link, err := l.Namespace(t, cfg.NodeName(owner)).Netlink().LinkByName("eth0"); err == nil {
		ownerMAC = link.Attrs().HardwareAddr.String()
	} else {
		t.Fatal(err)
	}
	out, err := client.Command(ctx, "ip", "-6", "neigh", "show", addr.String(), "dev", "eth0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "lladdr "+ownerMAC) {
		t.Fatalf("client's neighbour entry for %s: %q (%v); want node%d's MAC %s", addr, out, err, owner, ownerMAC)
	}
	t.Logf("client's neighbour entry: %s", strings.TrimSpace(string(out)))

	// The condition is still True and the state names the same node.
	got, err := kube.CoreV1().Services(ns).Get(ctx, "http", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := meta.FindStatusCondition(got.Status.Conditions, lab.ConditionL2Announced)
	if c == nil || c.Status != metav1.ConditionTrue || announcer(t, cfg, addr, got) != owner {
		t.Errorf("condition %s after the request: %+v; want it True and naming node%d", lab.ConditionL2Announced, c, owner)
	}
}

// announcer is the node (1-based) a condition message names as announcing
// addr ("<addr> announced by <node> on <interfaces>").
func announcer(t *testing.T, cfg lab.Config, addr netip.Addr, svc *corev1.Service) int {
	t.Helper()
	recs, err := l2kube.Records(svc)
	if err != nil {
		t.Fatal(err)
	}
	rec, ok := recs[addr]
	if !ok || rec.State != l2announce.Announcing {
		t.Fatalf("%s is not announced: annotation %s is %q", addr, l2kube.AnnotationState, svc.Annotations[l2kube.AnnotationState])
	}
	for i := 1; i <= cfg.Nodes; i++ {
		if cfg.NodeName(i) == rec.Node {
			return i
		}
	}
	t.Fatalf("annotation %s names %q, not a node of the lab", l2kube.AnnotationState, rec.Node)
	return 0
}

// serviceEndpoints lists the ready endpoint addresses of a Service's
// EndpointSlices, waiting for at least one.
func serviceEndpoints(ctx context.Context, t *testing.T, kube kubernetes.Interface, ns, name string) []string {
	t.Helper()
	var out []string
	waitUntil(t, time.Minute, "ready endpoints of "+ns+"/"+name, func() error {
		list, err := kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
		if err != nil {
			return err
		}
		out = nil
		for _, s := range list.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					out = append(out, e.Addresses...)
				}
			}
		}
		if len(out) == 0 {
			return fmt.Errorf("none yet")
		}
		return nil
	})
	return out
}
