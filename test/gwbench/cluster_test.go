package gwbench

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1b1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/test/kubetest"
	"github.com/berthnet/berth/xds/benchgen"
)

// controllerNS is the controller's namespace: the xDS CA Secret.
const controllerNS = "berth-system"

// cluster is the test API server with the Gateway API's and Berth's CRDs.
type cluster struct {
	// c is an admin client without client-side throttling.
	c          client.WithWatch
	cfg        *rest.Config
	kubeconfig string
}

func scheme(tb testing.TB) *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme, gwv1.Install, gwv1b1.Install} {
		if err := add(s); err != nil {
			tb.Fatal(err)
		}
	}
	return s
}

func startCluster(b *testing.B) *cluster {
	b.Helper()
	root, err := kubetest.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	env := kubetest.Start(b, kubetest.Options{
		CRDPaths: []string{filepath.Join(root, "config", "crd", "bases"), filepath.Join(root, "config", "crd", "gateway-api")},
		// Room for a ClusterIP per Service (envtest's default range has 256).
		APIServerFlags: map[string]string{"service-cluster-ip-range": "10.96.0.0/16"},
	})
	kubeconfig, _ := env.User(b, "gwbench-controller", "system:masters")
	cfg := rest.CopyConfig(env.Config)
	// 15,000 objects at client-go's default 5 QPS would take an hour.
	cfg.QPS, cfg.Burst = 5000, 10000
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme(b)})
	if err != nil {
		b.Fatal(err)
	}
	cl := &cluster{c: c, cfg: cfg, kubeconfig: kubeconfig}
	ctx := context.Background()
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: controllerNS}},
		// The Gateway's Envoy Service gets its address from it.
		&v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "gwbench"}, Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.Address{"198.51.100.0/28"}}},
	} {
		if err := c.Create(ctx, o); err != nil {
			b.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
	return cl
}

// createAll creates objs, in order for the first `serial` of them (the
// namespaces, the class and the Gateway) and then 16 at a time.
func (c *cluster) createAll(b *testing.B, objs []benchgen.Object, serial int) {
	b.Helper()
	ctx := context.Background()
	create := func(o benchgen.Object) error {
		co := o.(client.Object)
		if err := c.c.Create(ctx, co); err != nil {
			return fmt.Errorf("create %T %s/%s: %w", o, o.GetNamespace(), o.GetName(), err)
		}
		return nil
	}
	for _, o := range objs[:serial] {
		if err := create(o); err != nil {
			b.Fatal(err)
		}
	}
	rest := objs[serial:]
	const workers = 16
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(rest); i += workers {
				if err := create(rest[i]); err != nil {
					errs <- err
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
}

// listAll lists, in parallel as informers do, every kind the Gateway engine
// caches that the benchmark fills: the baseline of the controller's cold
// start (it cannot translate before it has read them).
func (c *cluster) listAll(ctx context.Context) (time.Duration, int, error) {
	lists := []client.ObjectList{&gwv1.GatewayClassList{}, &gwv1.GatewayList{}, &gwv1.HTTPRouteList{},
		&corev1.NamespaceList{}, &corev1.ServiceList{}, &discoveryv1.EndpointSliceList{}}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(lists))
	for i, l := range lists {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.c.List(ctx, l)
		}()
	}
	wg.Wait()
	took := time.Since(start)
	n := 0
	for i, l := range lists {
		if errs[i] != nil {
			return 0, 0, fmt.Errorf("list %T: %w", l, errs[i])
		}
		n += meta.LenList(l)
	}
	return took, n, nil
}

// addPath adds an Exact match on path to the first rule of route i and
// returns when the write that did it was sent, and the route's new
// resourceVersion.
func (c *cluster) addPath(ctx context.Context, i int, path string) (sent time.Time, rv string, err error) {
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var r gwv1.HTTPRoute
		if err := c.c.Get(ctx, client.ObjectKey{Namespace: benchgen.Namespace(i), Name: fmt.Sprintf("r%d", i)}, &r); err != nil {
			return err
		}
		exact := gwv1.PathMatchExact
		r.Spec.Rules[0].Matches = append(r.Spec.Rules[0].Matches, gwv1.HTTPRouteMatch{Path: &gwv1.HTTPPathMatch{Type: &exact, Value: &path}})
		sent = time.Now()
		if err := c.c.Update(ctx, &r); err != nil {
			return err
		}
		rv = r.ResourceVersion
		return nil
	})
	return sent, rv, err
}

// setEndpoint sets the address of the first endpoint of route i's Service
// and returns when the write was sent, and the slice's new resourceVersion.
func (c *cluster) setEndpoint(ctx context.Context, i int, addr string) (sent time.Time, rv string, err error) {
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var s discoveryv1.EndpointSlice
		if err := c.c.Get(ctx, client.ObjectKey{Namespace: benchgen.Namespace(i), Name: benchgen.ServiceName(i) + "-1"}, &s); err != nil {
			return err
		}
		s.Endpoints[0].Addresses = []string{addr}
		sent = time.Now()
		if err := c.c.Update(ctx, &s); err != nil {
			return err
		}
		rv = s.ResourceVersion
		return nil
	})
	return sent, rv, err
}
