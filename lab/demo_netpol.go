package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/berthnet/berth/lab/netns"
)

// SeedPolicy is the demo's NetworkPolicy: only pods labelled role=frontend
// may reach pods labelled app=web, on TCP 80.
func SeedPolicy(namespace string) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "web-allow-frontend", Namespace: namespace},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "frontend"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: new(intstr.FromInt32(80))}},
			}},
		},
	}
}

// demoNetworkPolicy applies the seed policy over a web pod and two clients
// on node1 (bridged to each other) and shows the frontend reaching web on
// TCP 80 and the other client refused.
func demoNetworkPolicy(ctx context.Context, cfg Config, c kubernetes.Interface, out io.Writer) int {
	fmt.Fprintf(out, "• NetworkPolicy %s/web-allow-frontend: only role=frontend reaches app=web on TCP 80\n", DemoNamespace)
	pods := []*corev1.Pod{
		demoPod("web", map[string]string{"app": "web", "demo": "netpol"}, 80),
		demoPod("frontend", map[string]string{"role": "frontend", "demo": "netpol"}, 8080),
		demoPod("other", map[string]string{"role": "other", "demo": "netpol"}, 8080),
	}
	for _, p := range pods {
		if _, err := c.CoreV1().Pods(DemoNamespace).Create(ctx, p, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			fmt.Fprintf(out, "    pod %s: %v\n", p.Name, err)
			return 1
		}
	}
	if _, err := c.NetworkingV1().NetworkPolicies(DemoNamespace).Create(ctx, SeedPolicy(DemoNamespace), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		fmt.Fprintf(out, "    policy: %v\n", err)
		return 1
	}
	ready, err := WaitEchoPods(ctx, c, DemoNamespace, "demo=netpol", len(pods), 2*time.Minute)
	if err != nil {
		fmt.Fprintf(out, "    %v\n", err)
		return 1
	}
	byName := map[string]corev1.Pod{}
	for _, p := range ready {
		byName[p.Name] = p
	}
	web := net.JoinHostPort(byName["web"].Status.PodIP, "80")
	failed := 0
	for _, from := range []string{"frontend", "other"} {
		p := byName[from]
		ns, err := OpenPod(cfg, p)
		if err != nil {
			fmt.Fprintf(out, "    %s: %v\n", from, err)
			failed++
			continue
		}
		line := fmt.Sprintf("    %-8s %-15s → web %-21s ", from, p.Status.PodIP, web)
		if from == "frontend" {
			// The agents may still be compiling the new pods: retry a while.
			if r, err := EchoUntil(ctx, ns, web, 30*time.Second); err != nil {
				failed++
				fmt.Fprintf(out, "%sFAILED: %v\n", line, err)
			} else {
				fmt.Fprintf(out, "%sallowed, answered by %s\n", line, r.Pod)
			}
		} else if err := refusedUntil(ctx, ns, web, 30*time.Second); err != nil {
			failed++
			fmt.Fprintf(out, "%sFAILED: %v\n", line, err)
		} else {
			fmt.Fprintf(out, "%srefused (dropped by table inet berth-netpol on %s)\n", line, byName["web"].Spec.NodeName)
		}
		ns.Close()
	}
	return failed
}

func demoPod(name string, labels map[string]string, port int32) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: DemoNamespace, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{EchoContainer("echo", EchoImage, port, corev1.ProtocolTCP)}},
	}
}

// refusedUntil waits until a TCP connection from ns to hostport is
// dropped (no answer within a second), as the policy takes effect; a
// connection, or a refusal by the pod, is not that.
func refusedUntil(ctx context.Context, ns *netns.Namespace, hostport string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var conn net.Conn
		err := ns.Do(func() (err error) {
			d := net.Dialer{Timeout: time.Second}
			conn, err = d.DialContext(ctx, "tcp", hostport)
			return err
		})
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		if err == nil {
			conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still connects after %s", timeout)
		}
	}
}
