package cni_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"

	"github.com/berthnet/berth/cni"
	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/kubetest"
	"github.com/berthnet/berth/test/netnstest"
)

var pluginDir string

func TestMain(m *testing.M) {
	if err := netnstest.SweepStale(); err != nil {
		panic(err)
	}
	dir, err := os.MkdirTemp("", "berth-cni-test-")
	if err != nil {
		panic(err)
	}
	root, err := kubetest.RepoRoot()
	if err != nil {
		panic(err)
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, cni.PluginType), "./cmd/berth-cni")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		panic(fmt.Sprintf("build berth-cni: %v\n%s", err, out))
	}
	pluginDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// node is a throwaway node namespace with the pod bridge, as berth-agent
// sets it up, and the runtime's view of the network config.
type node struct {
	ns      *netns.Namespace
	dataDir string
	list    *libcni.NetworkConfigList
	cninet  *libcni.CNIConfig
}

func newNode(t *testing.T, podCIDRs ...string) *node {
	t.Helper()
	ns := netnstest.New(t)
	if err := ns.AddBridge(cni.DefaultBridge); err != nil {
		t.Fatal(err)
	}
	for _, c := range podCIDRs {
		gw := strings.Replace(c, ".0/", ".1/", 1)
		if strings.Contains(c, ":") {
			gw = strings.Replace(c, "::/", "::1/", 1)
		}
		if err := ns.AddAddress(cni.DefaultBridge, gw); err != nil {
			t.Fatal(err)
		}
	}
	n := &node{ns: ns, dataDir: t.TempDir(), cninet: runtimeCNI(pluginDir)}
	n.list = n.conflist(t, podCIDRs, nil)
	return n
}

func (n *node) conflist(t *testing.T, podCIDRs []string, extra map[string]any) *libcni.NetworkConfigList {
	t.Helper()
	plugin := map[string]any{"type": cni.PluginType, "bridge": cni.DefaultBridge, "podCIDRs": podCIDRs, "dataDir": n.dataDir}
	for k, v := range extra {
		plugin[k] = v
	}
	raw, err := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": "berth", "plugins": []any{plugin}})
	if err != nil {
		t.Fatal(err)
	}
	list, err := libcni.ConfListFromBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// in runs fn on a thread in the node's namespace: the plugin process the
// runtime starts inherits it, as on a real node.
func (n *node) in(t *testing.T, fn func() error) error {
	t.Helper()
	return n.ns.Do(fn)
}

// runtimeCNI is libcni as a runtime holds it: one for every pod. Its exec
// is given, not left nil: libcni fills a nil one in on first use, without
// a lock, a race when pods are added at once (the race detector saw it).
func runtimeCNI(pluginDir string) *libcni.CNIConfig {
	return libcni.NewCNIConfig([]string{pluginDir}, &invoke.DefaultExec{
		RawExec:       &invoke.RawExec{Stderr: os.Stderr},
		PluginDecoder: version.PluginDecoder{},
	})
}

func rt(id string, pod *netns.Namespace) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: pod.Path(), IfName: "eth0"}
}

func (n *node) add(t *testing.T, list *libcni.NetworkConfigList, r *libcni.RuntimeConf) (*current.Result, error) {
	t.Helper()
	var res types.Result
	err := n.in(t, func() (err error) {
		res, err = n.cninet.AddNetworkList(context.Background(), list, r)
		return err
	})
	if err != nil {
		return nil, err
	}
	return current.NewResultFromResult(res)
}

func (n *node) del(t *testing.T, r *libcni.RuntimeConf) error {
	t.Helper()
	return n.in(t, func() error { return n.cninet.DelNetworkList(context.Background(), n.list, r) })
}

func (n *node) reserved(t *testing.T) int {
	t.Helper()
	s, err := cni.OpenStore(n.dataDir, "berth")
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Count()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func cniCode(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

func TestAddCheckDel(t *testing.T) {
	n := newNode(t, "10.244.1.0/24")
	pod := netnstest.New(t)
	r := rt("c1", pod)
	res, err := n.add(t, n.list, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.244.1.2/24" || res.IPs[0].Gateway.String() != "10.244.1.1" {
		t.Fatalf("result IPs %+v, want 10.244.1.2/24 via 10.244.1.1", res.IPs)
	}
	if len(res.Interfaces) != 2 || res.Interfaces[1].Sandbox != pod.Path() || res.Interfaces[0].Name != cni.HostVethName("c1", "eth0") {
		t.Fatalf("result interfaces %+v", res.Interfaces)
	}
	// The pod reaches the node through the bridge, from its own address.
	if seen := netnstest.Connect(t, n.ns, pod, "10.244.1.1:9000"); !strings.HasPrefix(seen, "10.244.1.2:") {
		t.Fatalf("node saw the pod as %s", seen)
	}
	if err := n.in(t, func() error { return n.cninet.CheckNetworkList(context.Background(), n.list, r) }); err != nil {
		t.Fatalf("CHECK after ADD: %v", err)
	}
	// Break the pod's default route: CHECK says so.
	h := pod.Netlink()
	routes, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range routes {
		if rt.Gw != nil {
			if err := h.RouteDel(&rt); err != nil {
				t.Fatal(err)
			}
		}
	}
	err = n.in(t, func() error { return n.cninet.CheckNetworkList(context.Background(), n.list, r) })
	if err == nil || !strings.Contains(err.Error(), "default route via 10.244.1.1 is missing") {
		t.Fatalf("CHECK with the route gone: %v", err)
	}
	if err := n.del(t, r); err != nil {
		t.Fatal(err)
	}
	if got := n.reserved(t); got != 0 {
		t.Errorf("%d addresses still reserved after DEL", got)
	}
	if links, _ := n.ns.Links(); strings.Contains(strings.Join(links, " "), "bv") {
		t.Errorf("host veth left after DEL: %v", links)
	}
	if err := n.del(t, r); err != nil {
		t.Errorf("second DEL: %v", err)
	}
}

func TestDualStack(t *testing.T) {
	n := newNode(t, "10.244.2.0/24", "fd00:10:244:2::/64")
	pod := netnstest.New(t)
	res, err := n.add(t, n.list, rt("dual", pod))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ip := range res.IPs {
		got = append(got, ip.Address.String()+" via "+ip.Gateway.String())
	}
	want := "10.244.2.2/24 via 10.244.2.1,fd00:10:244:2::2/64 via fd00:10:244:2::1"
	if strings.Join(got, ",") != want {
		t.Fatalf("IPs %v, want %s", got, want)
	}
	if seen := netnstest.Connect(t, n.ns, pod, "[fd00:10:244:2::1]:9000"); !strings.HasPrefix(seen, "[fd00:10:244:2::2]:") {
		t.Fatalf("node saw the pod as %s over IPv6", seen)
	}
	// An old runtime asking for 0.3.1 gets a result in that version.
	old, err := libcni.ConfListFromBytes(mustJSON(t, map[string]any{"cniVersion": "0.3.1", "name": "berth", "plugins": []any{map[string]any{"type": cni.PluginType, "podCIDRs": []string{"10.244.2.0/24"}, "dataDir": n.dataDir}}}))
	if err != nil {
		t.Fatal(err)
	}
	pod2 := netnstest.New(t)
	var res2 types.Result
	if err := n.in(t, func() (err error) {
		res2, err = n.cninet.AddNetworkList(context.Background(), old, rt("old", pod2))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if res2.Version() != "0.3.1" {
		t.Errorf("result version %s, want 0.3.1", res2.Version())
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStatus(t *testing.T) {
	ns := netnstest.New(t)
	n := &node{ns: ns, dataDir: t.TempDir(), cninet: runtimeCNI(pluginDir)}
	n.list = n.conflist(t, []string{"10.244.3.0/24"}, nil)
	status := func(list *libcni.NetworkConfigList) error {
		return n.in(t, func() error { return n.cninet.GetStatusNetworkList(context.Background(), list) })
	}
	err := status(n.list)
	if cniCode(err) != types.ErrPluginNotAvailable || !strings.Contains(err.Error(), "bridge berth0 does not exist") {
		t.Fatalf("STATUS without the bridge: %v (code %d), want code 50", err, cniCode(err))
	}
	if err := ns.AddBridge(cni.DefaultBridge); err != nil {
		t.Fatal(err)
	}
	if err := status(n.list); err != nil {
		t.Fatalf("STATUS with bridge and config: %v", err)
	}
	err = status(n.conflist(t, nil, nil))
	if cniCode(err) != types.ErrPluginNotAvailable || !strings.Contains(err.Error(), "no podCIDRs") {
		t.Fatalf("STATUS without podCIDRs: %v", err)
	}
}

func TestGC(t *testing.T) {
	n := newNode(t, "10.244.4.0/24")
	var rts []*libcni.RuntimeConf
	for i := range 3 {
		pod := netnstest.New(t)
		r := rt(fmt.Sprintf("gc%d", i), pod)
		if _, err := n.add(t, n.list, r); err != nil {
			t.Fatal(err)
		}
		rts = append(rts, r)
	}
	// The runtime still knows gc0 only: the others leaked (their DEL never came).
	err := n.in(t, func() error {
		return n.cninet.GCNetworkList(context.Background(), n.list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "gc0", IfName: "eth0"}}})
	})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := cni.OpenStore(n.dataDir, "berth")
	for i, r := range rts {
		owned, err := s.Owned(cni.Attachment{ContainerID: r.ContainerID, IfName: "eth0"})
		if err != nil {
			t.Fatal(err)
		}
		if (i == 0) != (len(owned) == 1) {
			t.Errorf("%s owns %v after GC", r.ContainerID, owned)
		}
	}
}

func TestErrors(t *testing.T) {
	n := newNode(t, "10.244.5.0/30")
	pod := netnstest.New(t)
	_, err := n.add(t, n.conflist(t, []string{"10.244.5.0/30"}, map[string]any{"mtu": 10}), rt("bad", pod))
	if cniCode(err) != types.ErrDecodingFailure || !strings.Contains(err.Error(), "mtu 10") {
		t.Errorf("ADD with mtu 10: %v (code %d)", err, cniCode(err))
	}
	_, err = n.add(t, n.conflist(t, nil, nil), rt("bad", pod))
	if err == nil || !strings.Contains(err.Error(), "no podCIDRs") {
		t.Errorf("ADD without podCIDRs: %v", err)
	}
	// A /30 has one address for pods.
	if _, err := n.add(t, n.list, rt("first", pod)); err != nil {
		t.Fatal(err)
	}
	pod2 := netnstest.New(t)
	_, err = n.add(t, n.list, rt("second", pod2))
	if cniCode(err) != types.ErrTryAgainLater || !strings.Contains(err.Error(), "every address is in use") {
		t.Errorf("ADD to a full range: %v (code %d)", err, cniCode(err))
	}
	if got := n.reserved(t); got != 1 {
		t.Errorf("a failed ADD left %d reservations, want the first pod's 1", got)
	}
}

// 50 ADDs at once, as a runtime starting many pods does, get 50 addresses.
func TestConcurrentAdds(t *testing.T) {
	n := newNode(t, "10.244.6.0/24")
	pods := make([]*netns.Namespace, 50)
	for i := range pods {
		pods[i] = netnstest.New(t)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]string{}
	for i, pod := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("conc%d", i)
			res, err := n.add(t, n.list, rt(id, pod))
			if err != nil {
				t.Errorf("ADD %s: %v", id, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ip := res.IPs[0].Address.IP.String()
			if other, dup := seen[ip]; dup {
				t.Errorf("%s and %s both got %s", other, id, ip)
			}
			seen[ip] = id
		}()
	}
	wg.Wait()
	if len(seen) != 50 || n.reserved(t) != 50 {
		t.Errorf("%d distinct addresses, %d reserved; want 50", len(seen), n.reserved(t))
	}
}

// 1,000 ADD/DEL cycles, every tenth with the pod's namespace deleted before
// DEL, leave no reservation, no veth and no file behind.
func TestAddDelCyclesLeaveNothing(t *testing.T) {
	n := newNode(t, "10.244.7.0/24")
	pod := netnstest.New(t)
	for i := range 1000 {
		target := pod
		var gone *netns.Namespace
		if i%10 == 9 {
			var err error
			gone, err = netns.Create(fmt.Sprintf("%sgone%d", netnstest.Prefix(), i))
			if err != nil {
				t.Fatal(err)
			}
			target = gone
		}
		r := rt(fmt.Sprintf("cycle%d", i), target)
		if _, err := n.add(t, n.list, r); err != nil {
			t.Fatalf("cycle %d ADD: %v", i, err)
		}
		if gone != nil {
			if err := gone.Delete(); err != nil {
				t.Fatal(err)
			}
		}
		if err := n.del(t, r); err != nil {
			t.Fatalf("cycle %d DEL: %v", i, err)
		}
	}
	if got := n.reserved(t); got != 0 {
		t.Errorf("%d reservations left", got)
	}
	links, err := n.ns.Links()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if strings.HasPrefix(l, "bv") {
			t.Errorf("veth %s left on the node", l)
		}
	}
	entries, err := os.ReadDir(filepath.Join(n.dataDir, "berth"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			t.Errorf("file %s left in the address store", e.Name())
		}
	}
}
