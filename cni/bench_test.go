package cni_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/netnstest"
)

// BenchmarkAddDel measures whole-process CNI ADD and DEL latency, as a
// runtime sees it through libcni, for berth-cni and, in the same run, for
// the upstream bridge + host-local pair built from
// github.com/containernetworking/plugins (`make bench` builds them and
// points $BERTH_UPSTREAM_CNI_DIR at them). The figures are p50 and p99 in
// milliseconds; hack/bench.sh prints the ratio.
func BenchmarkAddDel(b *testing.B) {
	b.Run("berth", func(b *testing.B) {
		benchAddDel(b, pluginDir, func(dataDir string) map[string]any {
			return map[string]any{"type": "berth-cni", "podCIDRs": []string{"10.244.8.0/24"}, "dataDir": dataDir}
		}, true)
	})
	b.Run("upstream-bridge-host-local", func(b *testing.B) {
		dir := os.Getenv("BERTH_UPSTREAM_CNI_DIR")
		if dir == "" {
			b.Skip("set BERTH_UPSTREAM_CNI_DIR to a folder with the upstream bridge and host-local plugins (make bench does)")
		}
		benchAddDel(b, dir, func(dataDir string) map[string]any {
			return map[string]any{"type": "bridge", "bridge": "cni0", "isGateway": true,
				"ipam": map[string]any{"type": "host-local", "ranges": [][]map[string]string{{{"subnet": "10.244.9.0/24"}}}, "dataDir": dataDir}}
		}, false)
	})
	// The kernel's share: deleting a veth pair like the one ADD made, with
	// nothing else. No plugin's DEL can be faster than this floor.
	b.Run("kernel-veth-del", func(b *testing.B) {
		node, pod := netnstest.New(b), netnstest.New(b)
		var dels []time.Duration
		for range b.N {
			if err := netns.Veth(node, "vbench", pod, "eth0"); err != nil {
				b.Fatal(err)
			}
			if err := node.Up("vbench"); err != nil {
				b.Fatal(err)
			}
			link, err := node.Link("vbench")
			if err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			if err := node.Netlink().LinkDel(link); err != nil {
				b.Fatal(err)
			}
			dels = append(dels, time.Since(t0))
		}
		b.ReportMetric(pct(dels, 50), "del-p50-ms")
		b.ReportMetric(pct(dels, 99), "del-p99-ms")
	})
}

func benchAddDel(b *testing.B, binDir string, plugin func(dataDir string) map[string]any, needBridge bool) {
	node := netnstest.New(b)
	if needBridge {
		if err := node.AddBridge("berth0"); err != nil {
			b.Fatal(err)
		}
		if err := node.AddAddress("berth0", "10.244.8.1/24"); err != nil {
			b.Fatal(err)
		}
	}
	pod := netnstest.New(b)
	raw, _ := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": "bench", "plugins": []any{plugin(b.TempDir())}})
	list, err := libcni.ConfListFromBytes(raw)
	if err != nil {
		b.Fatal(err)
	}
	cninet := libcni.NewCNIConfigWithCacheDir([]string{binDir}, b.TempDir(), nil)
	var adds, dels []time.Duration
	b.ResetTimer()
	for i := range b.N {
		rt := &libcni.RuntimeConf{ContainerID: fmt.Sprintf("bench%d", i), NetNS: pod.Path(), IfName: "eth0"}
		err := node.Do(func() error {
			t0 := time.Now()
			if _, err := cninet.AddNetworkList(context.Background(), list, rt); err != nil {
				return err
			}
			t1 := time.Now()
			if err := cninet.DelNetworkList(context.Background(), list, rt); err != nil {
				return err
			}
			adds = append(adds, t1.Sub(t0))
			dels = append(dels, time.Since(t1))
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(pct(adds, 50), "add-p50-ms")
	b.ReportMetric(pct(adds, 99), "add-p99-ms")
	b.ReportMetric(pct(dels, 50), "del-p50-ms")
	b.ReportMetric(pct(dels, 99), "del-p99-ms")
}

func pct(ds []time.Duration, p int) float64 {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return float64(s[i]) / float64(time.Millisecond)
}
