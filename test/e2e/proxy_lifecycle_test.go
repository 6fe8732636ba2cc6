package e2e

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/berthnet/berth/lab"
	"github.com/berthnet/berth/test/labtest"
)

// Traffic through a ClusterIP follows a Deployment scaled 1 -> 5 -> 0, and
// a restart of a node's agent neither breaks an established connection nor
// refuses a new one: the rules stay in the kernel, and the new agent
// replaces them in one transaction.
func TestServiceProxyScaleAndRestart(t *testing.T) {
	t.Parallel()
	l, ctx := labtest.Start(t, 5*time.Minute, "--service-proxy=true")
	c := l.Client(t)
	const ns = "scale"
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deploy := func(name, image string, port int32) {
		t.Helper()
		labels := map[string]string{"app": name}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(int32(1)),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{lab.EchoContainer(name, image, port, corev1.ProtocolTCP)}},
				},
			},
		}
		if _, err := c.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	service := func(name string, port int32) string {
		t.Helper()
		s := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name},
				Ports: []corev1.ServicePort{{Name: "main", Port: port, TargetPort: intstr.FromString("serve")}}},
		}
		s, err := c.CoreV1().Services(ns).Create(ctx, s, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s.Spec.ClusterIP
	}
	scale := func(name string, n int) {
		t.Helper()
		patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, n)
		if _, err := c.AppsV1().Deployments(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	deploy("web", lab.EchoImage, 8080)
	webIP := service("web", 80)
	node1 := l.Namespace(t, "node1")
	web := net.JoinHostPort(webIP, "80")
	// answering waits until the Service's answers come from exactly the
	// Deployment's n ready pods: every one of them answers, nothing else.
	answering := func(n int) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			pods, err := lab.WaitEchoPods(ctx, c, ns, "app=web", n, time.Until(deadline))
			if err != nil {
				t.Fatalf("%d web pods: %v", n, err)
			}
			want := map[string]bool{}
			for _, p := range pods {
				want[p.Status.PodIP] = true
			}
			seen, stray := map[string]bool{}, ""
			for range 20 * n {
				r, err := lab.EchoFromAddr(ctx, node1, web)
				if err != nil {
					continue
				}
				if !want[r.PodIP] {
					stray = r.PodIP
				}
				seen[r.PodIP] = true
			}
			if len(seen) == n && stray == "" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("web scaled to %d: answered by %v (stray %q), want exactly %v", n, seen, stray, want)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	answering(1)
	scale("web", 5)
	answering(5)
	scale("web", 0)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		start := time.Now()
		_, err := lab.EchoFromAddr(ctx, node1, web)
		if err != nil && strings.Contains(err.Error(), "refused") && time.Since(start) < 2*time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("web scaled to 0: %v; want a fast refusal", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Agent restart: one connection stays open across it, and new ones
	// keep being accepted while the agent is away.
	deploy("tcp", lab.TCPEchoImage, 7000)
	tcpAddr := net.JoinHostPort(service("tcp", 7000), "7000")
	if _, err := lab.WaitEchoPods(ctx, c, ns, "app=tcp", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	dial := func() (conn net.Conn, err error) {
		err = node1.Do(func() error {
			d := net.Dialer{Timeout: 2 * time.Second}
			conn, err = d.DialContext(ctx, "tcp", tcpAddr)
			return err
		})
		return conn, err
	}
	roundTrip := func(conn net.Conn, msg string) error {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintln(conn, msg); err != nil {
			return err
		}
		got, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			return err
		}
		if got != msg+"\n" {
			return fmt.Errorf("echo %q, want %q", got, msg)
		}
		return nil
	}
	var conn net.Conn
	for deadline := time.Now().Add(time.Minute); ; {
		var err error
		if conn, err = dial(); err == nil {
			if err = roundTrip(conn, "before"); err == nil {
				break
			}
			conn.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("tcp echo through %s: %v", tcpAddr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	defer conn.Close()

	var attempts, failures atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			attempts.Add(1)
			c, err := dial()
			if err == nil {
				err = roundTrip(c, "during")
				c.Close()
			}
			if err != nil {
				failures.Add(1)
				lastErr.Store(err.Error())
			}
		}
	}()
	// The agent stays away for a second: long enough for a score of new
	// connections to find the rules still in place.
	out, err := l.Berthctl(ctx, "lab", "restart-agent", "--name", l.Name, "--node", "1", "--down-for", "1s")
	close(stop)
	<-done
	if err != nil {
		t.Fatalf("restart-agent: %v\n%s", err, out)
	}
	if failures.Load() > 0 || attempts.Load() < 10 {
		t.Errorf("new connections during the agent's restart: %d of %d failed (last: %v)", failures.Load(), attempts.Load(), lastErr.Load())
	}
	if err := roundTrip(conn, "after"); err != nil {
		t.Errorf("the connection opened before the restart: %v", err)
	}
	// The new agent has synced (it is ready) and still serves new flows.
	if c, err := dial(); err != nil {
		t.Errorf("a new connection after the restart: %v", err)
	} else {
		if err := roundTrip(c, "new"); err != nil {
			t.Errorf("a new connection after the restart: %v", err)
		}
		c.Close()
	}
}
