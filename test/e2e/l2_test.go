package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthnet/berth/lab"
	"github.com/berthnet/berth/test/l2probe"
	"github.com/berthnet/berth/test/labtest"
)

// A LoadBalancer address on the lab's LAN: the LAN client's own kernel
// resolves it with ARP to the announcing node, exactly one node answers,
// traffic reaches the pods through that node's service proxy, and when
// the node's agent is killed, its link goes down or its agent restarts,
// another node takes over and the traffic comes back, with never two
// nodes answering for the address at once. A newly assigned address that
// another host on the LAN holds is not announced but reported.
func TestL2Announcement(t *testing.T) {
	t.Parallel()
	l, ctx := labtest.Start(t, 8*time.Minute)
	s := l2probe.Setup(ctx, t, l, "l2")
	t.Logf("%s: first answer %s after the Services were created", s.Addr, s.Reached.Sub(s.Created).Round(time.Millisecond))
	owner, err := s.Owner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ownerMAC := s.MAC(t, owner)

	// HTTP through the other Service's address reaches an http-echo pod.
	r := eventually(t, func() (lab.EchoReply, error) {
		return lab.EchoFromAddr(ctx, s.Client, net.JoinHostPort(s.HTTPAddr.String(), strconv.Itoa(l2probe.HTTPPort)))
	})
	t.Logf("http://%s:%d answered by pod %s on %s", s.HTTPAddr, l2probe.HTTPPort, r.PodIP, r.Node)
	// The client's kernel resolved the address to the announcing node.
	out, err := s.Client.Command(ctx, "ip", "neigh", "show", s.Addr.String(), "dev", "eth0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "lladdr "+ownerMAC) {
		t.Fatalf("client's neighbour entry for %s: %q (%v); want node%d's MAC %s", s.Addr, out, err, owner, ownerMAC)
	}

	// Exactly one node answers; nobody answers for a pool address that
	// Berth did not assign.
	ask := func(addr netip.Addr, rounds int) l2probe.Answers {
		t.Helper()
		a, err := l2probe.StartAnswerers(s.Client, "eth0", addr, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		waitUntil(t, time.Minute, fmt.Sprintf("%d ARP requests", rounds), func() error {
			if n := a.Rounds(); n < rounds {
				return fmt.Errorf("%d sent", n)
			}
			return nil
		})
		return a.Stop()
	}
	if a := ask(s.Addr, 50); len(a.ByMAC) != 1 || a.ByMAC[ownerMAC] == 0 || a.Both != 0 {
		t.Errorf("ARP for %s: %+v; want node%d (%s) alone", s.Addr, a, owner, ownerMAC)
	}
	_, last := s.Config.LBPool()
	if a := ask(last, 30); len(a.ByMAC) != 0 {
		t.Errorf("ARP for %s, assigned to no Service: answered by %v", last, a.ByMAC)
	}

	for _, f := range []l2probe.Failure{l2probe.Kill, l2probe.LinkDown, l2probe.Restart} {
		round := s.Fail(ctx, t, f)
		t.Log(round)
		if round.Answers.Both != 0 {
			t.Errorf("%s: %d ARP requests answered by two nodes", f, round.Answers.Both)
		}
		if len(round.Answers.ByMAC) < 2 {
			t.Errorf("%s: only %v answered; want another node to take over", f, round.Answers.ByMAC)
		}
	}

	// Conflict: the router holds a pool address; a Service asking for it
	// gets a condition and an event, and no node answers for it until the
	// router lets it go.
	taken := last.Prev()
	router := l.Namespace(t, "router")
	if err := router.AddAddress("eth0", taken.String()+"/32"); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "conflict", Namespace: s.NS, Annotations: map[string]string{"berth.dev/load-balancer-ips": taken.String()}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "udp"},
			Ports: []corev1.ServicePort{{Name: "main", Port: l2probe.UDPPort, Protocol: corev1.ProtocolUDP}}},
	}
	if _, err := s.Kube.CoreV1().Services(s.NS).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	condition := func(want string) {
		t.Helper()
		waitUntil(t, time.Minute, "condition "+want, func() error {
			svc, err := s.Kube.CoreV1().Services(s.NS).Get(ctx, "conflict", metav1.GetOptions{})
			if err != nil {
				return err
			}
			c := meta.FindStatusCondition(svc.Status.Conditions, lab.ConditionL2Announced)
			if c == nil || c.Reason != want {
				return fmt.Errorf("condition %+v", c)
			}
			t.Logf("%s: %s", c.Reason, c.Message)
			return nil
		})
	}
	condition("AddressConflict")
	routerMAC := ""
	if link, err := router.Netlink().LinkByName("eth0"); err == nil {
		routerMAC = link.Attrs().HardwareAddr.String()
	}
	if a := ask(taken, 30); len(a.ByMAC) != 1 || a.ByMAC[routerMAC] == 0 {
		t.Errorf("ARP for %s held by the router: answered by %v; want the router (%s) alone", taken, a.ByMAC, routerMAC)
	}
	waitUntil(t, time.Minute, "an AddressConflict event", func() error {
		evs, err := s.Kube.CoreV1().Events(s.NS).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=conflict,reason=AddressConflict"})
		if err != nil {
			return err
		}
		if len(evs.Items) == 0 {
			return fmt.Errorf("none yet")
		}
		return nil
	})
	if out, err := router.Command(ctx, "ip", "addr", "del", taken.String()+"/32", "dev", "eth0").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	condition("Announced")
}
