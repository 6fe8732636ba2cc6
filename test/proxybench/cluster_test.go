package proxybench

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/berthnet/berth/test/kubetest"
)

const (
	benchNS    = "bench"
	nodeName   = "proxybench-node"
	nodeIP     = "192.0.2.10"
	podCIDR    = "10.244.0.0/24"
	clusterNet = "10.244.0.0/16"
	// svcPort is every Service's port, epPort every endpoint's.
	svcPort    = 80
	epPort     = 8080
	endpointsN = 10
)

// sizes are the Service counts to measure, from $BERTH_PROXYBENCH_SIZES
// (comma-separated), ascending; 1k, 5k and 10k by default.
func sizes(tb testing.TB) []int {
	raw := os.Getenv("BERTH_PROXYBENCH_SIZES")
	if raw == "" {
		return []int{1000, 5000, 10000}
	}
	var out []int
	for _, f := range strings.Split(raw, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			tb.Fatalf("BERTH_PROXYBENCH_SIZES=%q: want positive Service counts separated by commas", raw)
		}
		out = append(out, n)
	}
	sort.Ints(out)
	return out
}

// sizeName is 1k for 1000, 250 for 250.
func sizeName(n int) string {
	if n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return strconv.Itoa(n)
}

// endpointAddr is endpoint j of Service i: unique addresses in 10.128.0.0/10.
func endpointAddr(i, j int) netip.Addr {
	base := uint32(10)<<24 | uint32(128)<<16
	v := base + uint32(i*endpointsN+j+1)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func serviceName(i int) string { return fmt.Sprintf("svc-%05d", i) }

// newService is a selector-less ClusterIP Service with one TCP port.
func newService(i int) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: serviceName(i), Namespace: benchNS},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Protocol: corev1.ProtocolTCP, Port: svcPort, TargetPort: intstr.FromInt32(epPort)}},
		},
	}
}

// newSlice is Service i's one EndpointSlice with ten ready endpoints.
func newSlice(i int) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: serviceName(i), Namespace: benchNS, Labels: map[string]string{
			discoveryv1.LabelServiceName: serviceName(i),
			discoveryv1.LabelManagedBy:   "proxybench.berth.dev",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(""), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(int32(epPort))}},
	}
	for j := range endpointsN {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{endpointAddr(i, j).String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
		})
	}
	return s
}

// cluster is one API server holding the benchmark's Services, shared by
// every size and both proxies.
type cluster struct {
	cs         kubernetes.Interface
	kubeconfig string
	// apiAddr is the API server's host:port, on the host's loopback.
	apiAddr string
	// clusterIPs[i] is Service i's ClusterIP; ips holds them all.
	clusterIPs []netip.Addr
	ips        map[[4]byte]bool
	// lastAddr numbers the endpoint addresses that changes bring in, in
	// 10.200.0.0/16, where no Service has one.
	lastAddr uint16
}

func startCluster(b *testing.B) *cluster {
	b.Helper()
	env := kubetest.Start(b, kubetest.Options{APIServerFlags: map[string]string{"service-cluster-ip-range": "10.96.0.0/16"}})
	kubeconfig, _ := env.User(b, "proxybench", "system:masters")
	cfg := rest.CopyConfig(env.Config)
	// Creating 20,000 objects at client-go's default 5 QPS would take an hour.
	cfg.QPS, cfg.Burst = 5000, 10000
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNS}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	// kube-proxy reads its Node's addresses; Berth reads every Node's podCIDRs.
	node, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: nodeName},
		Spec:       corev1.NodeSpec{PodCIDR: podCIDR, PodCIDRs: []string{podCIDR}},
	}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: nodeIP}, {Type: corev1.NodeHostName, Address: nodeName}}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		b.Fatal(err)
	}
	u, err := url.Parse(env.Config.Host)
	if err != nil {
		b.Fatal(err)
	}
	return &cluster{cs: cs, kubeconfig: kubeconfig, apiAddr: u.Host, ips: map[[4]byte]bool{}}
}

// grow creates Services (and their EndpointSlices) until there are n.
func (c *cluster) grow(b *testing.B, n int) {
	b.Helper()
	from := len(c.clusterIPs)
	if n <= from {
		return
	}
	start := time.Now()
	c.clusterIPs = append(c.clusterIPs, make([]netip.Addr, n-from)...)
	const workers = 16
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for i := from + w; i < n; i += workers {
				svc, err := c.cs.CoreV1().Services(benchNS).Create(ctx, newService(i), metav1.CreateOptions{})
				if err != nil {
					errs <- fmt.Errorf("create Service %d: %w", i, err)
					return
				}
				ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
				if err != nil {
					errs <- fmt.Errorf("Service %d ClusterIP %q: %w", i, svc.Spec.ClusterIP, err)
					return
				}
				c.clusterIPs[i] = ip
				if _, err := c.cs.DiscoveryV1().EndpointSlices(benchNS).Create(ctx, newSlice(i), metav1.CreateOptions{}); err != nil {
					errs <- fmt.Errorf("create EndpointSlice %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	for _, ip := range c.clusterIPs[from:] {
		c.ips[ip.As4()] = true
	}
	b.Logf("created Services %d to %d with %d endpoints each in %s", from, n-1, endpointsN, time.Since(start).Round(time.Millisecond))
	// Let the API server and etcd finish what the burst of writes left.
	time.Sleep(5 * time.Second)
}

// changeServicePort sets Service i's port and returns when the write that
// did it was sent.
func (c *cluster) changeServicePort(i int, port int32) (sent time.Time, err error) {
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ctx := context.Background()
		svc, err := c.cs.CoreV1().Services(benchNS).Get(ctx, serviceName(i), metav1.GetOptions{})
		if err != nil {
			return err
		}
		svc.Spec.Ports[0].Port = port
		sent = time.Now()
		_, err = c.cs.CoreV1().Services(benchNS).Update(ctx, svc, metav1.UpdateOptions{})
		return err
	})
	return sent, err
}

// changeEndpoint sets the address of Service i's first endpoint and
// returns when the write that did it was sent.
func (c *cluster) changeEndpoint(i int, addr netip.Addr) (sent time.Time, err error) {
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ctx := context.Background()
		s, err := c.cs.DiscoveryV1().EndpointSlices(benchNS).Get(ctx, serviceName(i), metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Endpoints[0].Addresses = []string{addr.String()}
		sent = time.Now()
		_, err = c.cs.DiscoveryV1().EndpointSlices(benchNS).Update(ctx, s, metav1.UpdateOptions{})
		return err
	})
	return sent, err
}
