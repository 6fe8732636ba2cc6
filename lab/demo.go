package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/berthnet/berth/lab/netns"
)

// DemoNamespace holds the demo's objects.
const DemoNamespace = "berth-demo"

// Demo runs an HTTP echo pod on every node (a DaemonSet and a Service over
// it) and shows every pod and every node reaching every pod, each server
// reporting the client address it saw: the pod's own, as no NAT is involved.
func Demo(ctx context.Context, cfg Config, out io.Writer) error {
	client, err := AdminClient(cfg)
	if err != nil {
		return err
	}
	if err := applyDemo(ctx, client); err != nil {
		return err
	}
	fmt.Fprintf(out, "• DaemonSet %s/echo: waiting for a Ready pod on each of %d nodes\n", DemoNamespace, cfg.Nodes)
	pods, err := WaitEchoPods(ctx, client, DemoNamespace, "app=echo", cfg.Nodes, 2*time.Minute)
	if err != nil {
		return err
	}
	failed := 0
	fmt.Fprintln(out, "• pod to pod (the server reports the client address it saw):")
	for _, from := range pods {
		ns, err := OpenPod(cfg, from)
		if err != nil {
			return err
		}
		for _, to := range pods {
			// In pod network mode bgp the routes may still be on their
			// way through the router right after lab up: retry a while.
			reply, err := EchoUntil(ctx, ns, net.JoinHostPort(to.Status.PodIP, "8080"), 30*time.Second)
			line := fmt.Sprintf("    %s %-15s → %s %-15s ", from.Spec.NodeName, from.Status.PodIP, to.Spec.NodeName, to.Status.PodIP)
			switch {
			case err != nil:
				failed++
				fmt.Fprintf(out, "%sFAILED: %v\n", line, err)
			case reply.Client != from.Status.PodIP:
				failed++
				fmt.Fprintf(out, "%sseen as %s: NATed!\n", line, reply.Client)
			default:
				fmt.Fprintf(out, "%sok, seen as %s\n", line, reply.Client)
			}
		}
		ns.Close()
	}
	fmt.Fprintln(out, "• node to pod:")
	for i := 1; i <= cfg.Nodes; i++ {
		ns, err := netns.Open(cfg.NodeNamespace(i))
		if err != nil {
			return err
		}
		var oks []string
		for _, to := range pods {
			if _, err := EchoUntil(ctx, ns, net.JoinHostPort(to.Status.PodIP, "8080"), 30*time.Second); err != nil {
				failed++
				fmt.Fprintf(out, "    %s → %s FAILED: %v\n", cfg.NodeName(i), to.Status.PodIP, err)
				continue
			}
			oks = append(oks, to.Status.PodIP)
		}
		ns.Close()
		fmt.Fprintf(out, "    %s → %s ok\n", cfg.NodeName(i), strings.Join(oks, ", "))
	}
	if cfg.ServiceProxy {
		failed += demoServices(ctx, cfg, client, pods, out)
		failed += demoLoadBalancer(ctx, cfg, client, out)
		failed += demoBGP(ctx, cfg, client, out)
	}
	failed += demoGateway(ctx, cfg, out)
	failed += demoNetworkPolicy(ctx, cfg, client, out)
	failed += demoTroubleshooting(ctx, cfg, client, pods, out)
	n, err := readyEndpoints(ctx, client, DemoNamespace, "echo")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "• Service %s/echo: EndpointSlices list %d ready endpoints (built by kube-controller-manager from the pods' status)\n", DemoNamespace, n)
	if failed > 0 {
		return fmt.Errorf("%d of the demo's connections failed", failed)
	}
	return nil
}

func applyDemo(ctx context.Context, c kubernetes.Interface) error {
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: DemoNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	labels := map[string]string{"app": "echo"}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: DemoNamespace},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{EchoContainer("echo", EchoImage, 8080, corev1.ProtocolTCP)},
				},
			},
		},
	}
	if _, err := c.AppsV1().DaemonSets(DemoNamespace).Create(ctx, ds, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: DemoNamespace},
		// A NodePort on the echo port: the ClusterIP answers on 8080 inside
		// the cluster, the node port on every node's address.
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: labels,
			Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromString("serve")}}},
	}
	if _, err := c.CoreV1().Services(DemoNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// WaitEchoPods waits until n pods matching selector are Ready with an IP,
// and returns them sorted by node.
func WaitEchoPods(ctx context.Context, c kubernetes.Interface, ns, selector string, n int, timeout time.Duration) ([]corev1.Pod, error) {
	deadline := time.Now().Add(timeout)
	for {
		list, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err == nil {
			var ready []corev1.Pod
			for _, p := range list.Items {
				if p.Status.PodIP != "" && podReady(&p) && p.DeletionTimestamp == nil {
					ready = append(ready, p)
				}
			}
			if len(ready) >= n {
				sort.Slice(ready, func(i, j int) bool { return ready[i].Spec.NodeName < ready[j].Spec.NodeName })
				return ready, nil
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("%d of %d pods %s Ready after %s:%s", len(ready), n, selector, timeout, podsState(ctx, c, ns, selector))
			}
		} else if time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// EchoFrom asks the HTTP echo server at ip:8080 from inside a namespace.
func EchoFrom(ctx context.Context, ns *netns.Namespace, ip string) (EchoReply, error) {
	return EchoFromAddr(ctx, ns, net.JoinHostPort(ip, "8080"))
}

// HTTPClient is an HTTP client whose connections start in ns, one per
// request.
func HTTPClient(ns *netns.Namespace) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			err = ns.Do(func() error {
				d := net.Dialer{Timeout: 5 * time.Second}
				conn, err = d.DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
		DisableKeepAlives: true,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// EchoFromAddr asks the HTTP echo server at host:port from inside a namespace.
func EchoFromAddr(ctx context.Context, ns *netns.Namespace, hostport string) (EchoReply, error) {
	hc := HTTPClient(ns)
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hostport+"/", nil)
	if err != nil {
		return EchoReply{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return EchoReply{}, err
	}
	defer resp.Body.Close()
	var r EchoReply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return EchoReply{}, fmt.Errorf("echo reply: %w", err)
	}
	return r, nil
}

func readyEndpoints(ctx context.Context, c kubernetes.Interface, ns, svc string) (int, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		slices, err := c.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
		if err != nil {
			return 0, err
		}
		n := 0
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					n++
				}
			}
		}
		if n > 0 || time.Now().After(deadline) {
			return n, nil
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// EchoUntil asks the echo server at hostport from ns until it answers or
// timeout passes (a Service may still be syncing, an address still being
// announced).
func EchoUntil(ctx context.Context, ns *netns.Namespace, hostport string, timeout time.Duration) (EchoReply, error) {
	deadline := time.Now().Add(timeout)
	for {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		r, err := EchoFromAddr(actx, ns, hostport)
		cancel()
		if err == nil || time.Now().After(deadline) {
			return r, err
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// demoServices shows the Service answering on its ClusterIP from every pod
// and node, and on its NodePort from the LAN client. It returns the number
// of failures.
func demoServices(ctx context.Context, cfg Config, c kubernetes.Interface, pods []corev1.Pod, out io.Writer) int {
	svc, err := c.CoreV1().Services(DemoNamespace).Get(ctx, "echo", metav1.GetOptions{})
	if err != nil {
		fmt.Fprintf(out, "    Service echo: %v\n", err)
		return 1
	}
	failed := 0
	ask := func(from string, ns *netns.Namespace, hostport string) {
		// The proxy may still be syncing the Service: retry for a while.
		r, err := EchoUntil(ctx, ns, hostport, 30*time.Second)
		if err != nil {
			failed++
			fmt.Fprintf(out, "    %-22s → %-21s FAILED: %v\n", from, hostport, err)
			return
		}
		fmt.Fprintf(out, "    %-22s → %-21s answered by %s on %s, client seen as %s\n", from, hostport, r.PodIP, r.Node, r.Client)
	}
	cip := net.JoinHostPort(svc.Spec.ClusterIP, "8080")
	fmt.Fprintf(out, "• Service %s/echo through the service proxy:\n", DemoNamespace)
	for _, p := range pods {
		ns, err := OpenPod(cfg, p)
		if err != nil {
			failed++
			fmt.Fprintf(out, "    pod %s: FAILED: %v\n", p.Status.PodIP, err)
			continue
		}
		ask("pod "+p.Status.PodIP, ns, cip)
		ns.Close()
	}
	for i := 1; i <= cfg.Nodes; i++ {
		if ns, err := netns.Open(cfg.NodeNamespace(i)); err == nil {
			ask(cfg.NodeName(i), ns, cip)
			ns.Close()
		}
	}
	if ns, err := netns.Open(cfg.ClientNamespace()); err == nil {
		for i := 1; i <= cfg.Nodes; i++ {
			ask("LAN client", ns, net.JoinHostPort(cfg.NodeAddr(i).String(), fmt.Sprint(svc.Spec.Ports[0].NodePort)))
		}
		ns.Close()
	}
	return failed
}
