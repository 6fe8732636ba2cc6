package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/berthnet/berth/lab"
	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/labtest"
)

// helmUpgrade changes one value of the lab's release, as an operator would
// (helm upgrade --reuse-values), and checks what the rollout of the agents
// it causes keeps: at most one agent down at a time (the chart's
// maxUnavailable: 1), the LoadBalancer Service echo-lan keeps its address,
// and once the rollout ends the LAN client reaches it again. It returns how
// many of the LAN client's requests, made every 200 ms through the rollout,
// went unanswered (logged: each node's agent restart moves or repeats the
// address's announcement).
func helmUpgrade(ctx context.Context, t *testing.T, l *labtest.Lab, c kubernetes.Interface, set string) {
	t.Helper()
	cfg := l.Config(t)
	svc, err := c.CoreV1().Services(lab.DemoNamespace).Get(ctx, "echo-lan", metav1.GetOptions{})
	if err != nil || len(svc.Status.LoadBalancer.Ingress) == 0 {
		t.Fatalf("Service echo-lan: %v (status %+v)", err, svc.Status.LoadBalancer)
	}
	addr := svc.Status.LoadBalancer.Ingress[0].IP
	ds, err := c.AppsV1().DaemonSets(lab.Namespace).Get(ctx, "berth-agent", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gen := ds.Generation

	client, err := netns.Open(cfg.ClientNamespace())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var (
		mu                         sync.Mutex
		asked, unanswered, maxDown int
		addrLost                   []string
	)
	watchCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for watchCtx.Err() == nil {
			rctx, cancel := context.WithTimeout(watchCtx, time.Second)
			_, err := lab.EchoFromAddr(rctx, client, net.JoinHostPort(addr, "8080"))
			cancel()
			s, serr := c.CoreV1().Services(lab.DemoNamespace).Get(watchCtx, "echo-lan", metav1.GetOptions{})
			d, derr := c.AppsV1().DaemonSets(lab.Namespace).Get(watchCtx, "berth-agent", metav1.GetOptions{})
			mu.Lock()
			asked++
			if err != nil && watchCtx.Err() == nil {
				unanswered++
			}
			if serr == nil && (len(s.Status.LoadBalancer.Ingress) == 0 || s.Status.LoadBalancer.Ingress[0].IP != addr) {
				addrLost = append(addrLost, time.Now().Format(time.StampMilli))
			}
			if derr == nil {
				maxDown = max(maxDown, int(d.Status.NumberUnavailable))
			}
			mu.Unlock()
			select {
			case <-watchCtx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()

	in := labtest.BuildImages(t)
	cmd := exec.CommandContext(ctx, in.Helm, "upgrade", lab.ReleaseName, in.Chart, "--namespace", lab.Namespace,
		"--kubeconfig", cfg.AdminKubeconfig(), "--reuse-values", "--set", set)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		stop()
		wg.Wait()
		t.Fatalf("helm upgrade --set %s: %v\n%s", set, err, out)
	}
	// The rollout: every agent replaced and ready.
	for {
		d, err := c.AppsV1().DaemonSets(lab.Namespace).Get(ctx, "berth-agent", metav1.GetOptions{})
		if err == nil && d.Generation > gen && d.Status.ObservedGeneration >= d.Generation &&
			d.Status.UpdatedNumberScheduled == int32(cfg.Nodes) && d.Status.NumberReady == int32(cfg.Nodes) && d.Status.NumberUnavailable == 0 {
			break
		}
		select {
		case <-ctx.Done():
			stop()
			wg.Wait()
			t.Fatalf("agents not rolled after helm upgrade --set %s: %+v (%v)", set, d.Status, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
	if _, err := lab.EchoUntil(ctx, client, net.JoinHostPort(addr, "8080"), time.Minute); err != nil {
		t.Errorf("LAN client → %s after the rollout: %v", addr, err)
	}
	stop()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("helm upgrade --set %s: LAN client → %s: %d of %d requests unanswered during the rollout; at most %d agents unavailable at once", set, addr, unanswered, asked, maxDown)
	if len(addrLost) > 0 {
		t.Errorf("Service echo-lan lost its address %s during the rollout, at %s", addr, strings.Join(addrLost, ", "))
	}
	if maxDown > 1 {
		t.Errorf("%d agents unavailable at once during the rollout, want at most 1 (maxUnavailable: 1)", maxDown)
	}
}
