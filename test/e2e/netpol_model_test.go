package e2e

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/berthnet/berth/lab"
	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/netpol"
	netpolkube "github.com/berthnet/berth/netpol/kube"
	"github.com/berthnet/berth/test/labtest"
)

// The truth-table model of upstream's NetworkPolicy e2e tests: namespaces
// x, y, z (labelled ns=<name>) with pods a, b, c (labelled pod=<name>),
// each serving TCP and UDP on 80 and 81 and naming those ports serve-80,
// serve-81, serve-80-udp and serve-81-udp. Pods are spread over the nodes,
// so pairs meet on one bridge and across nodes.
var (
	npNamespaces = []string{"x", "y", "z"}
	npPods       = []string{"a", "b", "c"}
	npProbes     = []npProbe{tcp80, tcp81, udp80, udp81}
)

type npProbe struct {
	proto corev1.Protocol
	port  int32
}

func (p npProbe) String() string { return fmt.Sprintf("%s/%d", p.proto, p.port) }

// npModel is the model running in one lab.
type npModel struct {
	lab  *labtest.Lab
	cfg  lab.Config
	c    kubernetes.Interface
	pods []corev1.Pod // x/a, x/b, ... z/c
	ns   []*netns.Namespace
}

func npPodSpec(name, ns, node string) *corev1.Pod {
	var ports []corev1.ContainerPort
	for _, p := range npProbes {
		n := fmt.Sprintf("serve-%d", p.port)
		if p.proto == corev1.ProtocolUDP {
			n += "-udp"
		}
		ports = append(ports, corev1.ContainerPort{Name: n, ContainerPort: p.port, Protocol: p.proto})
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"pod": name}},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{multiEcho(ports)}},
	}
}

// newNPModel creates the namespaces and pods and waits until all are Ready.
func newNPModel(ctx context.Context, t *testing.T, l *labtest.Lab) *npModel {
	t.Helper()
	m := &npModel{lab: l, cfg: l.Config(t), c: l.FastClient(t)}
	i := 0
	for _, ns := range npNamespaces {
		if _, err := m.c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"ns": ns}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, p := range npPods {
			node := m.cfg.NodeName(1 + i%m.cfg.Nodes)
			i++
			if _, err := m.c.CoreV1().Pods(ns).Create(ctx, npPodSpec(p, ns, node), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, ns := range npNamespaces {
		ready, err := lab.WaitEchoPods(ctx, m.c, ns, "pod", len(npPods), 2*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range npPods {
			for _, p := range ready {
				if p.Name == name {
					m.pods = append(m.pods, p)
					pns, err := lab.OpenPod(m.cfg, p)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { pns.Close() })
					m.ns = append(m.ns, pns)
				}
			}
		}
	}
	return m
}

func (m *npModel) names() []string {
	out := make([]string, len(m.pods))
	for i, p := range m.pods {
		out[i] = p.Namespace + "/" + p.Name
	}
	return out
}

// expected computes the truth tables from the evaluator over the objects
// as the API server has them now (defaults applied): the second opinion
// next to each case's hand-written table.
func (m *npModel) expected(ctx context.Context, t *testing.T) map[npProbe]netpol.Matrix {
	t.Helper()
	pols, err := m.c.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsl, err := m.c.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var nss []netpol.Namespace
	for i := range nsl.Items {
		nss = append(nss, netpolkube.NamespaceOf(&nsl.Items[i]))
	}
	var pods []netpol.Pod
	for _, p := range m.pods {
		cur, err := m.c.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		np, ok := netpolkube.PodOf(cur)
		if !ok {
			t.Fatalf("pod %s/%s has no address", p.Namespace, p.Name)
		}
		pods = append(pods, np)
	}
	out := map[npProbe]netpol.Matrix{}
	for _, pr := range npProbes {
		out[pr] = netpol.Reachability(pols.Items, nss, pods, pr.proto, pr.port, false)
	}
	return out
}

// reach probes one connection from inside ns: a TCP handshake, or a UDP
// datagram echoed back (sent twice).
func reach(ctx context.Context, ns *netns.Namespace, ip string, pr npProbe) bool {
	addr := net.JoinHostPort(ip, strconv.Itoa(int(pr.port)))
	var conn net.Conn
	err := ns.Do(func() (err error) {
		d := net.Dialer{Timeout: 800 * time.Millisecond}
		conn, err = d.DialContext(ctx, strings.ToLower(string(pr.proto)), addr)
		return err
	})
	if err != nil {
		return false
	}
	defer conn.Close()
	if pr.proto == corev1.ProtocolTCP {
		return true
	}
	buf := make([]byte, 64)
	for range 2 {
		if _, err := conn.Write([]byte("probe")); err != nil {
			return false
		}
		_ = conn.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
		if n, err := conn.Read(buf); err == nil && strings.HasSuffix(string(buf[:n]), "probe") {
			return true
		}
	}
	return false
}

// observe probes every pair (but a pod to itself, which goes over its
// loopback and no hook sees) for each protocol and port, in parallel.
func (m *npModel) observe(ctx context.Context) map[npProbe]netpol.Matrix {
	out := map[npProbe]netpol.Matrix{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 48)
	for _, pr := range npProbes {
		mat := netpol.NewMatrix(m.names())
		out[pr] = mat
		for i := range m.pods {
			for j := range m.pods {
				if i == j {
					continue
				}
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					ok := reach(ctx, m.ns[i], m.pods[j].Status.PodIP, pr)
					<-sem
					mu.Lock()
					mat.Allowed[i][j] = ok
					mu.Unlock()
				}()
			}
		}
	}
	wg.Wait()
	return out
}

// waitTruthTable probes until the observed tables equal the hand-written
// ones (want), or fails the test after a deadline with the diffs. The
// evaluator's tables are a second opinion: a cell where it disagrees with
// want fails the test at once, whatever the lab does.
func (m *npModel) waitTruthTable(ctx context.Context, t *testing.T, what string, want npExpect) {
	t.Helper()
	names := m.names()
	eval := m.expected(ctx, t)
	var disagree []string
	for _, pr := range npProbes {
		if d := npDisagreement(want.matrix(names, pr), eval[pr], pr); d != "" {
			disagree = append(disagree, d)
		}
	}
	if len(disagree) > 0 {
		t.Fatalf("%s: the evaluator disagrees with the hand-written table:\n%s", what, strings.Join(disagree, "\n"))
	}
	deadline := time.Now().Add(45 * time.Second)
	for round := 1; ; round++ {
		got := m.observe(ctx)
		var diffs []string
		for _, pr := range npProbes {
			w := want.matrix(names, pr)
			for i := range w.Names {
				got[pr].Allowed[i][i] = w.Allowed[i][i] // not probed
			}
			d, err := netpol.Diff(w, got[pr])
			if err != nil {
				t.Fatal(err)
			}
			if !d.Empty() {
				diffs = append(diffs, fmt.Sprintf("%s %s: expected\n%s\nobserved\n%s\n%s", what, pr, w, got[pr], d))
			}
		}
		if len(diffs) == 0 {
			t.Logf("%s: the truth tables match (round %d); TCP/80:\n%s", what, round, want.matrix(names, tcp80))
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("%s: the observed reachability differs from the expected after %d rounds:\n%s", what, round, strings.Join(diffs, "\n\n"))
		}
	}
}

// multiEcho is the lab's multi-echo container serving TCP and UDP on 80
// and 81, with the given container ports.
func multiEcho(ports []corev1.ContainerPort) corev1.Container {
	c := lab.EchoContainer("serve", lab.MultiEchoImage, 80, corev1.ProtocolTCP)
	c.Ports = ports
	c.Env = append(c.Env, corev1.EnvVar{Name: "ECHO_PORTS", Value: "80,81"})
	return c
}
