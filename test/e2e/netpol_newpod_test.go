package e2e

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthnet/berth/lab"
	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/netpol"
)

// podWatch follows a pod being started on a real node, from the first
// process in its network namespace on (the sandbox's pause, which the
// runtime starts once berth-cni's ADD has returned).
type podWatch struct {
	ctx  context.Context
	t    *testing.T
	m    *npModel
	pod  *corev1.Pod
	node *netns.Namespace
	ns   *netns.Namespace
}

func newPodWatch(ctx context.Context, t *testing.T, m *npModel, pod *corev1.Pod, node string) *podWatch {
	return &podWatch{ctx: ctx, t: t, m: m, pod: pod, node: m.lab.Namespace(t, node)}
}

// waitAddress returns the pod's IPv4 address as soon as its eth0 has one
// (the CNI ADD is still running or just returned).
func (w *podWatch) waitAddress() string {
	w.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var openErr error
	for time.Now().Before(deadline) && w.ctx.Err() == nil {
		if w.ns == nil {
			var ns *netns.Namespace
			if ns, openErr = lab.OpenPod(w.m.cfg, *w.pod); openErr == nil {
				w.ns = ns
				w.t.Cleanup(func() { ns.Close() })
			}
		}
		if w.ns != nil {
			if l, err := w.ns.Netlink().LinkByName("eth0"); err == nil {
				if addrs, err := w.ns.Netlink().AddrList(l, netlink.FAMILY_V4); err == nil && len(addrs) > 0 {
					return addrs[0].IP.String()
				}
			}
		}
		time.Sleep(2 * time.Millisecond) // polling for the address to exist
	}
	w.t.Fatalf("pod %s/%s: no IPv4 address on eth0 in its network namespace (opened: %v; last error opening it: %v)", w.pod.Namespace, w.pod.Name, w.ns != nil, openErr)
	return ""
}

func (w *podWatch) ready() bool {
	p, err := w.m.c.CoreV1().Pods(w.pod.Namespace).Get(w.ctx, w.pod.Name, metav1.GetOptions{})
	return err == nil && podIsReady(p)
}

func podIsReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// inTable says whether the node's berth-netpol table dispatches ip to a
// chain of its own (the agent has compiled the pod).
func (w *podWatch) inTable(ip string) bool {
	var out []byte
	_ = w.node.Do(func() (err error) {
		out, err = exec.Command("nft", "list", "map", "inet", netpol.Table, "ingress-pods4").CombinedOutput()
		return err
	})
	return strings.Contains(string(out), ip+" : goto ")
}

// probePassed sends one connection attempt from ns to ip and says how a
// packet got through, "" when none did: a handshake, an answer, or a
// refusal (a reset or port unreachable is a packet that passed).
func probePassed(ctx context.Context, ns *netns.Namespace, ip string, pr npProbe) string {
	addr := net.JoinHostPort(ip, strconv.Itoa(int(pr.port)))
	var conn net.Conn
	err := ns.Do(func() (err error) {
		d := net.Dialer{Timeout: 300 * time.Millisecond}
		conn, err = d.DialContext(ctx, strings.ToLower(string(pr.proto)), addr)
		return err
	})
	if errors.Is(err, syscall.ECONNREFUSED) {
		return "refused by the peer (a packet passed)"
	}
	if err != nil {
		return ""
	}
	defer conn.Close()
	if pr.proto == corev1.ProtocolTCP {
		return "connected"
	}
	if _, err := conn.Write([]byte("probe")); err != nil {
		return ""
	}
	_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 64)
	_, err = conn.Read(buf)
	switch {
	case err == nil:
		return "answered"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "port unreachable came back (a packet passed)"
	}
	return ""
}
