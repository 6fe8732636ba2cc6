package e2e

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/berthnet/berth/lab"
	"github.com/berthnet/berth/lab/netns"
)

// openPod enters a running pod's network namespace (on a real node, through
// a process of the pod) for the rest of the test.
func openPod(t *testing.T, cfg lab.Config, p corev1.Pod) *netns.Namespace {
	t.Helper()
	ns, err := lab.OpenPod(cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// waitPodGone waits until a deleted pod's network is gone from its node:
// the host side of its eth0 (found from inside the pod before, through the
// namespace it still holds open) no longer exists in node.
func waitPodGone(t *testing.T, node, pod *netns.Namespace) {
	t.Helper()
	eth0, err := pod.Netlink().LinkByName("eth0")
	if err != nil {
		t.Fatalf("pod's eth0: %v", err)
	}
	peer := eth0.Attrs().ParentIndex
	if peer == 0 {
		t.Fatalf("pod's eth0 (%s) has no peer link", eth0.Type())
	}
	deadline := time.Now().Add(time.Minute)
	for {
		l, err := node.Netlink().LinkByIndex(peer)
		if err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the host side of the deleted pod's eth0 (%s, index %d) still there after a minute", l.Attrs().Name, peer)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
