package proxybench

import (
	"context"
	"net/netip"
	"runtime"
	"testing"

	"github.com/google/nftables"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/berthnet/berth/proxy"
	proxykube "github.com/berthnet/berth/proxy/kube"
	"github.com/berthnet/berth/test/netnstest"
)

// BenchmarkProxyCore splits Berth's sync into what BenchmarkProxy cannot
// tell apart, on the same Services and EndpointSlices but without an API
// server, so each part can be timed and profiled alone (-cpuprofile,
// -memprofile):
//
//   - state: proxy/kube.State, objects to the proxy's input; with the heap
//     the objects take (MiB-objects, about what an informer holds without
//     managedFields) and the state (MiB-state);
//   - memory-full, memory-one-change: the Syncer with a backend that
//     drops the transactions: what a full sync (a cold start, in batches)
//     and an update after one endpoint changed (the delta the agent's
//     watches send) compute in memory, and the heap a synced Syncer keeps
//     (MiB-syncer);
//   - kernel-full, kernel-one-change: the same through the real netlink
//     backend into a fresh network namespace: memory plus the kernel.
//
// BenchmarkProxy's full sync less kernel-full is what starting the
// process, listing from the API server and filling the informers cost.
func BenchmarkProxyCore(b *testing.B) {
	ctx := context.Background()
	for _, n := range sizes(b) {
		h0 := liveHeapMiB()
		svcs, slices := coreObjects(n)
		h1 := liveHeapMiB()
		cidrs := []netip.Prefix{netip.MustParsePrefix(podCIDR)}
		st := proxykube.State(nodeName, svcs, slices, cidrs, nil)
		h2 := liveHeapMiB()
		// The same state with one endpoint of one Service replaced.
		changed := append([]discoveryv1.EndpointSlice(nil), slices...)
		edited := slices[n/4].DeepCopy()
		edited.Endpoints[0].Addresses = []string{"10.200.255.1"}
		changed[n/4] = *edited
		alt := [2]proxy.State{proxykube.State(nodeName, svcs, changed, cidrs, nil), st}
		// The same change as the agent sends it: a delta of that Service.
		var deltas [2]proxy.Delta
		for i, s := range alt {
			for _, sp := range s.Services {
				if sp.Key.Name == serviceName(n/4) {
					deltas[i] = proxy.Delta{Upsert: []proxy.ServicePort{sp}, Endpoints: map[proxy.PortKey][]proxy.Endpoint{sp.Key: s.Endpoints[sp.Key]}, ClusterCIDRs: cidrs}
				}
			}
		}
		name := sizeName(n)

		b.Run("state-"+name, func(b *testing.B) {
			for range b.N {
				_ = proxykube.State(nodeName, svcs, slices, cidrs, nil)
			}
			b.ReportMetric(h1-h0, "MiB-objects")
			b.ReportMetric(h2-h1, "MiB-state")
		})
		b.Run("memory-full-"+name, func(b *testing.B) {
			var d discard
			for range b.N {
				d = discard{}
				if err := proxy.NewSyncer(&d, nil).Sync(ctx, st); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(d.ops), "operations")
			before := liveHeapMiB()
			kept := proxy.NewSyncer(&discard{}, nil)
			if err := kept.Sync(ctx, st); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(liveHeapMiB()-before, "MiB-syncer")
			runtime.KeepAlive(kept)
		})
		b.Run("memory-one-change-"+name, func(b *testing.B) {
			var d discard
			s := proxy.NewSyncer(&d, nil)
			if err := s.Sync(ctx, st); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			d.ops = 0
			for i := range b.N {
				if err := s.Update(ctx, deltas[i%2]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(d.ops)/float64(b.N), "operations/op")
		})
		b.Run("kernel-full-"+name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				be := netlinkIn(b, netnstest.New(b).Fd())
				b.StartTimer()
				if err := proxy.NewSyncer(be, nil).Sync(ctx, st); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("kernel-one-change-"+name, func(b *testing.B) {
			s := proxy.NewSyncer(netlinkIn(b, netnstest.New(b).Fd()), nil)
			if err := s.Sync(ctx, st); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				if err := s.Update(ctx, deltas[i%2]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// liveHeapMiB is the heap in use after a collection.
func liveHeapMiB() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc) / (1 << 20)
}

// discard is a backend that counts the operations it is sent and applies
// none; the table never exists, so a full sync is a cold start.
type discard struct{ ops int }

func (d *discard) Apply(_ context.Context, tx *proxy.Tx) error { d.ops += len(tx.Ops); return nil }
func (d *discard) TableExists(context.Context) (bool, error)   { return false, nil }

// netlinkIn is the agent's kernel backend, in the namespace behind fd.
func netlinkIn(b *testing.B, fd int) *proxy.Netlink {
	b.Helper()
	be, err := proxy.NewNetlink(nftables.WithNetNSFd(fd))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = be.Close() })
	return be
}

// coreObjects are n Services and their EndpointSlices as the API server
// would return them, with ClusterIPs from 10.96.0.0/16.
func coreObjects(n int) ([]corev1.Service, []discoveryv1.EndpointSlice) {
	svcs := make([]corev1.Service, n)
	slices := make([]discoveryv1.EndpointSlice, n)
	for i := range n {
		s := newService(i)
		ip := netip.AddrFrom4([4]byte{10, 96, byte((i + 10) >> 8), byte(i + 10)})
		s.Spec.ClusterIP, s.Spec.ClusterIPs = ip.String(), []string{ip.String()}
		svcs[i] = *s
		slices[i] = *newSlice(i)
	}
	return svcs, slices
}
