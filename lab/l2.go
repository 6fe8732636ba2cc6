package lab

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/berthnet/berth/lab/netns"
)

// The lab announces LoadBalancer addresses on its LAN at layer 2: an
// IPPool of the LAN's IPv4 addresses just below the client's, another of
// IPv6 addresses in the LAN's /64, an L2Announcement for both, and the
// agents' shared heartbeat key.

// lbPoolSize is how many LAN addresses the lab's pool holds.
const lbPoolSize = 16

// LBPool is the lab pool's first and last address.
func (c Config) LBPool() (netip.Addr, netip.Addr) {
	last := hosts(c.LAN) - 2
	return nth(c.LAN, last-lbPoolSize+1), nth(c.LAN, last)
}

// LBPool6 is the lab's IPv6 pool's first and last address: lbPoolSize
// addresses at ::b:0 in the LAN's /64, where no host of the lab is (their
// interface IDs have no hex letters).
func (c Config) LBPool6() (netip.Addr, netip.Addr) {
	a := c.LAN6.Masked().Addr().As16()
	binary.BigEndian.PutUint64(a[8:], 0xb0000)
	first := netip.AddrFrom16(a)
	binary.BigEndian.PutUint64(a[8:], 0xb0000+lbPoolSize-1)
	return first, netip.AddrFrom16(a)
}

// LBPoolName names the lab's IPv4 IPPool and the L2Announcement of both
// pools; LBPool6Name names the IPv6 IPPool.
const (
	LBPoolName  = "lab-lan"
	LBPool6Name = "lab-lan-v6"
)

// LBPoolManifest is the lab's IPPools and their L2Announcement.
func (c Config) LBPoolManifest() []byte {
	first, last := c.LBPool()
	first6, last6 := c.LBPool6()
	return []byte(fmt.Sprintf(`apiVersion: berth.dev/v1alpha1
kind: IPPool
metadata:
  name: %[1]s
spec:
  addresses: ["%[2]s-%[3]s"]
---
apiVersion: berth.dev/v1alpha1
kind: IPPool
metadata:
  name: %[4]s
spec:
  addresses: ["%[5]s-%[6]s"]
---
apiVersion: berth.dev/v1alpha1
kind: L2Announcement
metadata:
  name: %[1]s
spec:
  ipPools: [%[1]s, %[4]s]
`, LBPoolName, first, last, LBPool6Name, first6, last6))
}

// ConditionL2Announced is the Service condition the announcing agent
// writes (l2announce/kube.ConditionAnnounced; the lab does not import the
// agent's packages).
const ConditionL2Announced = "berth.dev/L2Announced"

// WaitLoadBalancer waits for a Service's first LoadBalancer address and
// for a node to announce it; it returns the address and the condition's
// message.
func WaitLoadBalancer(ctx context.Context, c kubernetes.Interface, ns, name string, timeout time.Duration) (netip.Addr, string, error) {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		svc, err := c.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = "no address yet"
			if len(svc.Status.LoadBalancer.Ingress) > 0 {
				addr, perr := netip.ParseAddr(svc.Status.LoadBalancer.Ingress[0].IP)
				cond := meta.FindStatusCondition(svc.Status.Conditions, ConditionL2Announced)
				switch {
				case perr != nil:
					last = perr.Error()
				case cond == nil:
					last = addr.String() + ": no node announces it yet"
				case cond.Status == metav1.ConditionTrue:
					return addr, cond.Message, nil
				default:
					last = cond.Reason + ": " + cond.Message
				}
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return netip.Addr{}, "", fmt.Errorf("service %s/%s: %s after %s", ns, name, last, timeout)
		}
		select {
		case <-ctx.Done():
			return netip.Addr{}, "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// demoLoadBalancer gives the demo's pods a LoadBalancer Service and shows
// the LAN client reaching it by its address: the client's kernel resolves
// it with ARP, one node answers, its service proxy forwards. It returns
// the number of failures.
func demoLoadBalancer(ctx context.Context, cfg Config, c kubernetes.Interface, out io.Writer) int {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo-lan", Namespace: DemoNamespace},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "echo"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}},
	}
	if _, err := c.CoreV1().Services(DemoNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
		fmt.Fprintf(out, "    Service echo-lan: %v\n", err)
		return 1
	}
	addr, msg, err := WaitLoadBalancer(ctx, c, DemoNamespace, "echo-lan", time.Minute)
	if err != nil {
		fmt.Fprintf(out, "• LoadBalancer: FAILED: %v\n", err)
		return 1
	}
	fmt.Fprintf(out, "• Service %s/echo-lan (LoadBalancer, pool %s, L2Announcement %s): %s\n", DemoNamespace, LBPoolName, LBPoolName, msg)
	ns, err := netns.Open(cfg.ClientNamespace())
	if err != nil {
		fmt.Fprintf(out, "    %v\n", err)
		return 1
	}
	defer ns.Close()
	hostport := net.JoinHostPort(addr.String(), "8080")
	r, err := EchoUntil(ctx, ns, hostport, 30*time.Second)
	if err != nil {
		fmt.Fprintf(out, "    LAN client → %s FAILED: %v\n", hostport, err)
		return 1
	}
	neigh, _ := ns.Command(ctx, "ip", "neigh", "show", addr.String()).CombinedOutput()
	fmt.Fprintf(out, "    LAN client → %-21s answered by %s on %s; the client's ARP entry: %s\n", hostport, r.PodIP, r.Node, strings.TrimSpace(string(neigh)))
	return 0
}

func poolRange(c Config) string {
	first, last := c.LBPool()
	first6, last6 := c.LBPool6()
	return first.String() + "-" + last.String() + " and " + first6.String() + "-" + last6.String()
}
