package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berthnet/berth/lab"
	"github.com/berthnet/berth/proxy"
	"github.com/berthnet/berth/test/labtest"
)

// The service proxy in the lab: a ClusterIP answers from every pod (which
// keeps its own address) and every node, and a NodePort answers the LAN
// client on every node's address.
func TestServiceProxy(t *testing.T) {
	t.Parallel()
	l, ctx := labtest.Start(t, 5*time.Minute, "--service-proxy=true")
	cfg := l.Config(t)
	pods := l.Demo(ctx, t)
	c := l.Client(t)
	backends := map[string]bool{}
	for _, p := range pods {
		backends[p.Status.PodIP] = true
	}
	svc, err := c.CoreV1().Services(lab.DemoNamespace).Get(ctx, "echo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The demo's Service is a NodePort on the echo port.
	np := svc
	clusterIP := np.Spec.ClusterIP

	// Pod -> ClusterIP: a backend answers and sees the pod's own address.
	for _, p := range pods {
		ns := openPod(t, cfg, p)
		r := eventually(t, func() (lab.EchoReply, error) { return lab.EchoFrom(ctx, ns, clusterIP) })
		// Answered by another pod: the client keeps its address. By
		// itself (hairpin): masqueraded, so the reply returns via the node.
		hairpin := r.PodIP == p.Status.PodIP
		if !backends[r.PodIP] || (r.Client == p.Status.PodIP) == hairpin {
			t.Errorf("pod %s -> ClusterIP %s: reply %+v; want a backend, the client's own address kept unless it reached itself", p.Status.PodIP, clusterIP, r)
		}
	}
	// Node -> ClusterIP.
	for i := 1; i <= cfg.Nodes; i++ {
		ns := l.Namespace(t, fmt.Sprintf("node%d", i))
		r := eventually(t, func() (lab.EchoReply, error) { return lab.EchoFrom(ctx, ns, clusterIP) })
		if !backends[r.PodIP] {
			t.Errorf("node%d -> ClusterIP: reply %+v", i, r)
		}
	}
	// LAN client -> every node's address on the NodePort.
	client := l.Namespace(t, "client")
	for i := 1; i <= cfg.Nodes; i++ {
		addr := fmt.Sprintf("%s:%d", cfg.NodeAddr(i), np.Spec.Ports[0].NodePort)
		r := eventually(t, func() (lab.EchoReply, error) { return lab.EchoFromAddr(ctx, client, addr) })
		if !backends[r.PodIP] {
			t.Errorf("client -> %s: reply %+v", addr, r)
		}
	}
	// LoadBalancer: berth-controller gives an address from an IPPool; the
	// LAN client routes it via a node (the announcers come later). With
	// Cluster policy any node forwards it, masqueraded; with Local policy
	// the node with the endpoint answers with the client's address kept.
	pool := []byte(`{"apiVersion":"berth.dev/v1alpha1","kind":"IPPool","metadata":{"name":"lab"},"spec":{"addresses":["198.51.100.0/28"]}}`)
	if err := c.CoreV1().RESTClient().Post().AbsPath("/apis/berth.dev/v1alpha1/ippools").Body(pool).Do(ctx).Error(); err != nil {
		t.Fatalf("create IPPool: %v", err)
	}
	lbIP := func(name string, local bool) string {
		t.Helper()
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: lab.DemoNamespace},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "echo"},
				Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: svc.Spec.Ports[0].TargetPort}}},
		}
		if local {
			svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}
		if _, err := c.CoreV1().Services(lab.DemoNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for {
			got, err := c.CoreV1().Services(lab.DemoNamespace).Get(ctx, name, metav1.GetOptions{})
			if err == nil && len(got.Status.LoadBalancer.Ingress) == 1 {
				return got.Status.LoadBalancer.Ingress[0].IP
			}
			if time.Now().After(deadline) {
				t.Fatalf("Service %s got no LoadBalancer address: %v %+v", name, err, got.Status)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	clusterLB, localLB := lbIP("echo-lb", false), lbIP("echo-local", true)
	// Route both addresses via node1, where one echo pod runs.
	var node1Pod corev1.Pod
	for _, p := range pods {
		if p.Spec.NodeName == "node1" {
			node1Pod = p
		}
	}
	for _, ip := range []string{clusterLB, localLB} {
		if err := client.AddRoute(ip+"/32", cfg.NodeAddr(1).String()); err != nil {
			t.Fatal(err)
		}
	}
	clientIP := cfg.ClientLAN().String()
	r := eventually(t, func() (lab.EchoReply, error) { return lab.EchoFromAddr(ctx, client, clusterLB+":8080") })
	if !backends[r.PodIP] || r.Client == clientIP {
		t.Errorf("client -> Cluster LB %s: reply %+v; want a backend, the client masqueraded", clusterLB, r)
	}
	for range 5 {
		r = eventually(t, func() (lab.EchoReply, error) { return lab.EchoFromAddr(ctx, client, localLB+":8080") })
		if r.PodIP != node1Pod.Status.PodIP || r.Client != clientIP {
			t.Errorf("client -> Local LB %s via node1: reply %+v; want node1's pod %s seeing the client %s", localLB, r, node1Pod.Status.PodIP, clientIP)
		}
	}

	// Hairpin: a pod reaching itself through a Service gets an answer, from
	// itself, masqueraded (so the reply comes back through the node).
	self := pods[0]
	if _, err := c.CoreV1().Pods(lab.DemoNamespace).Patch(ctx, self.Name, types.MergePatchType, []byte(`{"metadata":{"labels":{"hairpin":"yes"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	hp := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "hairpin", Namespace: lab.DemoNamespace},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"hairpin": "yes"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: svc.Spec.Ports[0].TargetPort}}},
	}
	if hp, err = c.CoreV1().Services(lab.DemoNamespace).Create(ctx, hp, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	selfNS := openPod(t, cfg, self)
	if r := eventually(t, func() (lab.EchoReply, error) { return lab.EchoFrom(ctx, selfNS, hp.Spec.ClusterIP) }); r.PodIP != self.Status.PodIP || r.Client == self.Status.PodIP {
		t.Errorf("hairpin: reply %+v; want the pod itself, the client masqueraded", r)
	}

	// The health-check node port of a Local LoadBalancer Service tells
	// which nodes have its endpoints: 200 and a count of 1 from the node of
	// the one selected pod, 503 and 0 from the others.
	hcSvc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "hairpin-local", Namespace: lab.DemoNamespace},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Selector: map[string]string{"hairpin": "yes"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: svc.Spec.Ports[0].TargetPort}}},
	}
	if hcSvc, err = c.CoreV1().Services(lab.DemoNamespace).Create(ctx, hcSvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hc := lab.HTTPClient(client)
	for i := 1; i <= cfg.Nodes; i++ {
		url := fmt.Sprintf("http://%s:%d/", cfg.NodeAddr(i), hcSvc.Spec.HealthCheckNodePort)
		wantCode, wantCount := http.StatusServiceUnavailable, 0
		if cfg.NodeName(i) == self.Spec.NodeName {
			wantCode, wantCount = http.StatusOK, 1
		}
		var code int
		var body proxy.HealthReply
		for deadline := time.Now().Add(30 * time.Second); ; {
			resp, err := hc.Get(url)
			if err == nil {
				code = resp.StatusCode
				err = json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
			}
			if err == nil && code == wantCode && body.LocalEndpoints == wantCount && body.Service.Name == hcSvc.Name {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("health check %s (node%d): %d %+v (%v); want %d with %d local endpoints", url, i, code, body, err, wantCode, wantCount)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// ClientIP affinity keeps one client on one endpoint.
	sticky := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "sticky", Namespace: lab.DemoNamespace},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "echo"}, SessionAffinity: corev1.ServiceAffinityClientIP,
			Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: svc.Spec.Ports[0].TargetPort}}},
	}
	if sticky, err = c.CoreV1().Services(lab.DemoNamespace).Create(ctx, sticky, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	stickyNS := openPod(t, cfg, pods[0])
	first := eventually(t, func() (lab.EchoReply, error) { return lab.EchoFrom(ctx, stickyNS, sticky.Spec.ClusterIP) })
	for range 8 {
		r := eventually(t, func() (lab.EchoReply, error) { return lab.EchoFrom(ctx, stickyNS, sticky.Spec.ClusterIP) })
		if r.PodIP != first.PodIP {
			t.Fatalf("affinity: answered by %s after %s", r.PodIP, first.PodIP)
		}
	}

	// A UDP flow whose endpoint goes away moves on to another endpoint,
	// although the client keeps its source port (conntrack is cleaned).
	udpPod := func(name, node string) {
		t.Helper()
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: lab.DemoNamespace, Labels: map[string]string{"app": "udp", "pod": name}},
			Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{lab.EchoContainer("echo", lab.UDPEchoImage, 9000, corev1.ProtocolUDP)}},
		}
		if _, err := c.CoreV1().Pods(lab.DemoNamespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	udpPod("udp-a", "node2")
	udpSvc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "udp", Namespace: lab.DemoNamespace},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "udp"},
			Ports: []corev1.ServicePort{{Name: "udp", Port: 9000, Protocol: corev1.ProtocolUDP}}},
	}
	if udpSvc, err = c.CoreV1().Services(lab.DemoNamespace).Create(ctx, udpSvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	as, err := lab.WaitEchoPods(ctx, c, lab.DemoNamespace, "pod=udp-a", 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	udpNS := openPod(t, cfg, pods[0])
	var conn *net.UDPConn
	if err := udpNS.Do(func() (err error) {
		conn, err = net.ListenUDP("udp", &net.UDPAddr{Port: 40000})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	target := &net.UDPAddr{IP: net.ParseIP(udpSvc.Spec.ClusterIP), Port: 9000}
	answeredBy := func() string {
		buf := make([]byte, 512)
		if _, err := conn.WriteToUDP([]byte("ping"), target); err != nil {
			return ""
		}
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			return ""
		}
		who, _, _ := strings.Cut(string(buf[:n]), " ")
		return who
	}
	waitAnswer := func(want string) {
		t.Helper()
		deadline := time.Now().Add(45 * time.Second)
		last := ""
		for time.Now().Before(deadline) {
			if last = answeredBy(); last == want {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("UDP flow from a fixed port: answered by %q, want %s", last, want)
	}
	waitAnswer(as[0].Status.PodIP)
	udpPod("udp-b", "node3")
	bs, err := lab.WaitEchoPods(ctx, c, lab.DemoNamespace, "pod=udp-b", 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CoreV1().Pods(lab.DemoNamespace).Delete(ctx, "udp-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAnswer(bs[0].Status.PodIP)

	// A Service with no endpoints is refused at once, not left to time out.
	empty := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "empty", Namespace: lab.DemoNamespace},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "nothing"}, Ports: []corev1.ServicePort{{Port: 8080}}},
	}
	empty, err = c.CoreV1().Services(lab.DemoNamespace).Create(ctx, empty, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns := openPod(t, cfg, pods[0])
	deadline := time.Now().Add(30 * time.Second)
	for {
		start := time.Now()
		_, err := lab.EchoFrom(ctx, ns, empty.Spec.ClusterIP)
		if err != nil && strings.Contains(err.Error(), "refused") && time.Since(start) < 2*time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("endpoint-less Service: %v; want a fast refusal", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// eventually retries a request until the proxy has caught up.
func eventually(t *testing.T, f func() (lab.EchoReply, error)) lab.EchoReply {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := f()
		if err == nil {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer after 30s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
