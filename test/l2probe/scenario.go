package l2probe

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/berthnet/berth/l2announce"
	l2kube "github.com/berthnet/berth/l2announce/kube"
	"github.com/berthnet/berth/lab"
	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/labtest"
)

// Scenario is a lab with LoadBalancer addresses on its LAN: udp-echo and
// http-echo pods on every node behind two Services (policy Local) with an
// address each from the lab's announced pool. (Services with policy Local
// share an address only when they select the same pods.)
type Scenario struct {
	Lab    *labtest.Lab
	Config lab.Config
	Kube   kubernetes.Interface
	Client *netns.Namespace
	NS     string
	// Addr is the udp Service's address, HTTPAddr the http Service's.
	Addr, HTTPAddr netip.Addr
	// Created is when the Services were created; Reached when the LAN
	// client first got an answer through the address.
	Created, Reached time.Time
}

// UDPPort and HTTPPort are the Services' ports.
const (
	UDPPort  = 9000
	HTTPPort = 8080
)

// Setup deploys the scenario in namespace ns of a running lab and waits
// until the LAN client gets an answer through the address.
func Setup(ctx context.Context, t testing.TB, l *labtest.Lab, ns string) *Scenario {
	t.Helper()
	s := &Scenario{Lab: l, Config: l.Config(t), Kube: l.Client(t), Client: l.Namespace(t, "client"), NS: ns}
	c := s.Kube
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// An echo pod of each kind on every node, behind Services with policy
	// Local: the announcing node serves from its own pod, so when it fails
	// the pods on it go with it and do not blur what the client measures.
	for _, d := range []struct {
		name, image string
		port        int32
		proto       corev1.Protocol
	}{{"udp", lab.UDPEchoImage, UDPPort, corev1.ProtocolUDP}, {"http", lab.EchoImage, HTTPPort, corev1.ProtocolTCP}} {
		labels := map[string]string{"app": d.name}
		ds := &appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Name: d.name, Namespace: ns},
			Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{lab.EchoContainer(d.name, d.image, d.port, d.proto)}}}},
		}
		if _, err := c.AppsV1().DaemonSets(ns).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := lab.WaitEchoPods(ctx, c, ns, "app="+d.name, s.Config.Nodes, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	s.Created = time.Now()
	for _, d := range []struct {
		name  string
		port  int32
		proto corev1.Protocol
	}{{"udp", UDPPort, corev1.ProtocolUDP}, {"http", HTTPPort, corev1.ProtocolTCP}} {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: d.name, Namespace: ns},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": d.name},
				ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
				Ports:                 []corev1.ServicePort{{Name: "main", Port: d.port, Protocol: d.proto, TargetPort: intstr.FromString("serve")}}},
		}
		if _, err := c.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	addr, _, err := lab.WaitLoadBalancer(ctx, c, ns, "udp", 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = addr
	if s.HTTPAddr, _, err = lab.WaitLoadBalancer(ctx, c, ns, "http", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	r, err := StartRequests(s.Client, netip.AddrPortFrom(addr, UDPPort), 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := wait(ctx, time.Minute, func() error {
		if r.AnsweredSince(s.Created) {
			return nil
		}
		return fmt.Errorf("no answer from %s:%d", addr, UDPPort)
	}); err != nil {
		t.Fatal(err)
	}
	s.Reached = r.FirstAnswer()
	r.Stop()
	return s
}

// Owner is the node (1-based) the udp Service's layer-2 state annotation
// (l2kube.AnnotationState, data; the condition's message is for people)
// names as announcing the address.
func (s *Scenario) Owner(ctx context.Context) (int, error) {
	svc, err := s.Kube.CoreV1().Services(s.NS).Get(ctx, "udp", metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	recs, err := l2kube.Records(svc)
	if err != nil {
		return 0, err
	}
	rec, ok := recs[s.Addr]
	if !ok || rec.State != l2announce.Announcing {
		return 0, fmt.Errorf("%s not announced: annotation %s is %q", s.Addr, l2kube.AnnotationState, svc.Annotations[l2kube.AnnotationState])
	}
	for i := 1; i <= s.Config.Nodes; i++ {
		if s.Config.NodeName(i) == rec.Node {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%s names %q, not a lab node", l2kube.AnnotationState, rec.Node)
}

// MAC is node i's LAN address.
func (s *Scenario) MAC(t testing.TB, i int) string {
	t.Helper()
	ns := s.Lab.Namespace(t, s.Config.NodeName(i))
	l, err := ns.Netlink().LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().HardwareAddr.String()
}

// Failure is what happens to the announcing node in a Round.
type Failure string

const (
	// Kill: its agent dies (SIGKILL) and comes back 2 s later.
	Kill Failure = "kill"
	// LinkDown: its LAN link goes down, and up again once another node
	// answers.
	LinkDown Failure = "link-down"
	// Restart: its agent restarts gracefully (SIGTERM), as in a rolling
	// update.
	Restart Failure = "restart"
)

// Round is one failure of the announcing node, seen from the LAN client.
type Round struct {
	Failure  Failure
	Owner    int
	Requests Result
	Answers  Answers
}

func (r Round) String() string {
	return fmt.Sprintf("%s of node%d: %v; ARP: %d requests, answered by %v, %d answered by two, %d flips",
		r.Failure, r.Owner, r.Requests, r.Answers.Requests, r.Answers.ByMAC, r.Answers.Both, r.Answers.Flips)
}

// Fail runs one round: requests every 10 ms and ARP who-has every 10 ms
// from the LAN client while the announcing node fails and recovers, until
// the address is served again and announced by a node of the lab.
func (s *Scenario) Fail(ctx context.Context, t testing.TB, f Failure) Round {
	t.Helper()
	owner, err := s.Owner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	round := Round{Failure: f, Owner: owner}
	req, err := StartRequests(s.Client, netip.AddrPortFrom(s.Addr, UDPPort), 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	arp, err := StartAnswerers(s.Client, "eth0", s.Addr, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := wait(ctx, 30*time.Second, func() error {
		if req.AnsweredSince(start) {
			return nil
		}
		return fmt.Errorf("no answer before the failure")
	}); err != nil {
		t.Fatal(err)
	}
	node := strconv.Itoa(owner)
	moved := func() error {
		o, err := s.Owner(ctx)
		if err == nil && o == owner {
			err = fmt.Errorf("node%d still announces %s", owner, s.Addr)
		}
		return err
	}
	switch f {
	case Kill:
		if out, err := s.Lab.Berthctl(ctx, "lab", "restart-agent", "--name", s.Lab.Name, "--node", node, "--kill", "--down-for", "2s"); err != nil {
			t.Fatalf("restart-agent --kill: %v\n%s", err, out)
		}
	case Restart:
		if out, err := s.Lab.Berthctl(ctx, "lab", "restart-agent", "--name", s.Lab.Name, "--node", node); err != nil {
			t.Fatalf("restart-agent: %v\n%s", err, out)
		}
	case LinkDown:
		ns := s.Lab.Namespace(t, s.Config.NodeName(owner))
		if out, err := ns.Command(ctx, "ip", "link", "set", "eth0", "down").CombinedOutput(); err != nil {
			t.Fatalf("link down: %v: %s", err, out)
		}
		down := time.Now()
		err := wait(ctx, 30*time.Second, func() error {
			if !req.AnsweredSince(down) {
				return fmt.Errorf("no answer since node%d's link went down", owner)
			}
			return moved()
		})
		if out, uerr := ns.Command(ctx, "ip", "link", "set", "eth0", "up").CombinedOutput(); uerr != nil {
			t.Fatalf("link up: %v: %s", uerr, out)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// Settled: the failed node is back and announces the address again
	// (with every node a candidate, it is first in the address's order),
	// and the address is served.
	if err := wait(ctx, time.Minute, func() error {
		o, err := s.Owner(ctx)
		if err != nil {
			return err
		}
		if o != owner {
			return fmt.Errorf("node%d announces %s, not yet node%d again", o, s.Addr, owner)
		}
		mark := time.Now()
		if err := wait(ctx, 5*time.Second, func() error {
			if req.AnsweredSince(mark.Add(200 * time.Millisecond)) {
				return nil
			}
			return fmt.Errorf("no answer since %s", mark.Format(time.StampMilli))
		}); err != nil {
			return err
		}
		return nil
	}); err != nil {
		t.Fatalf("after %s of node%d: %v", f, owner, err)
	}
	round.Requests = req.Stop()
	round.Answers = arp.Stop()
	return round
}

// wait polls check until it returns nil or timeout passes.
func wait(ctx context.Context, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w (after %s)", err, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
