package controllers_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/controllers"
	"github.com/berthnet/berth/test/kubetest"
)

// lbEnv is a real API server with Berth's CRDs and a controller that can be
// stopped and started again.
type lbEnv struct {
	t      testing.TB
	env    *kubetest.Env
	c      client.Client
	scheme *runtime.Scheme
	opts   controllers.LBIPAMOptions
	stop   func()
	// reg holds the running controller's metrics.
	reg *prometheus.Registry
}

func newLBEnv(t testing.TB, flags map[string]string) *lbEnv {
	t.Helper()
	env := kubetest.Start(t, kubetest.Options{
		CRDPaths:       []string{filepath.Join("..", "config", "crd", "bases")},
		APIServerFlags: flags,
	})
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(env.Config, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	e := &lbEnv{t: t, env: env, c: c, scheme: s, opts: controllers.LBIPAMOptions{ServeUnclassed: true}}
	t.Cleanup(func() { e.stopController() })
	return e
}

// startController runs a fresh controller, as a new process would: no state
// but what the API server holds.
func (e *lbEnv) startController() {
	e.t.Helper()
	mgr, err := ctrl.NewManager(e.env.Config, ctrl.Options{
		Scheme:                 e.scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.reg = prometheus.NewRegistry()
	if err := controllers.SetupLBIPAM(mgr, e.opts, e.reg); err != nil {
		e.t.Fatal(err)
	}
	e.stop = runManager(e.t, context.Background(), mgr)
}

func (e *lbEnv) stopController() {
	if e.stop != nil {
		e.stop()
		e.stop = nil
	}
}

func (e *lbEnv) create(obj client.Object) {
	e.t.Helper()
	if err := e.c.Create(context.Background(), obj); err != nil {
		e.t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

func (e *lbEnv) namespace(name string, labels map[string]string) {
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})
}

func ippool(name string, addrs ...v1alpha1.Address) *v1alpha1.IPPool {
	return &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.IPPoolSpec{Addresses: addrs}}
}

func lbService(ns, name string, mutate ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

// waitService polls the Service until cond accepts it.
func (e *lbEnv) waitService(ns, name, what string, cond func(*corev1.Service) error) *corev1.Service {
	e.t.Helper()
	var svc corev1.Service
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := e.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &svc)
		if err == nil {
			err = cond(&svc)
		}
		if err == nil {
			return &svc
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("service %s/%s: %s: %v (status %+v)", ns, name, what, err, svc.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hasIPs waits until the Service shows exactly these addresses, with ipMode
// VIP and an AddressAllocated condition that is True.
func (e *lbEnv) hasIPs(ns, name string, want ...string) *corev1.Service {
	e.t.Helper()
	return e.waitService(ns, name, "addresses "+strings.Join(want, ","), func(s *corev1.Service) error {
		var got []string
		for _, ing := range s.Status.LoadBalancer.Ingress {
			if ing.IPMode == nil || *ing.IPMode != corev1.LoadBalancerIPModeVIP {
				return fmt.Errorf("ingress %s without ipMode VIP", ing.IP)
			}
			got = append(got, ing.IP)
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("ingress %v", got)
		}
		c := meta.FindStatusCondition(s.Status.Conditions, controllers.ConditionAddressAllocated)
		if c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("condition %+v", c)
		}
		return nil
	})
}

// pending waits until the Service shows no address and says why.
func (e *lbEnv) pending(ns, name, reason string) *corev1.Service {
	e.t.Helper()
	return e.waitService(ns, name, "pending with "+reason, func(s *corev1.Service) error {
		if len(s.Status.LoadBalancer.Ingress) != 0 {
			return fmt.Errorf("has ingress %v", s.Status.LoadBalancer.Ingress)
		}
		c := meta.FindStatusCondition(s.Status.Conditions, controllers.ConditionAddressAllocated)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != reason {
			return fmt.Errorf("condition %+v", c)
		}
		return nil
	})
}

// event waits for an event about the object with the given reason.
func (e *lbEnv) event(ns, name, reason string) eventsv1.Event {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var evs eventsv1.EventList
		if err := e.c.List(context.Background(), &evs, client.InNamespace(ns)); err != nil {
			e.t.Fatal(err)
		}
		for _, ev := range evs.Items {
			if ev.Regarding.Name == name && ev.Reason == reason {
				return ev
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no %s event for %s/%s", reason, ns, name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *lbEnv) waitPool(name, what string, cond func(*v1alpha1.IPPool) error) *v1alpha1.IPPool {
	e.t.Helper()
	var p v1alpha1.IPPool
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := e.c.Get(context.Background(), client.ObjectKey{Name: name}, &p)
		if err == nil {
			err = cond(&p)
		}
		if err == nil {
			return &p
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("pool %s: %s: %v (status %+v)", name, what, err, p.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *lbEnv) update(obj client.Object, mutate func()) {
	e.t.Helper()
	updateObject(e.t, context.Background(), e.c, obj, mutate)
}

func keyOf(ns, name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }

// metric waits until the registry shows the metric with these labels at want.
func (e *lbEnv) metric(name string, labels map[string]string, want float64) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for {
		families, err := e.reg.Gather()
		if err != nil {
			e.t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() != name {
				continue
			}
			for _, m := range f.GetMetric() {
				match := true
				for _, lp := range m.GetLabel() {
					if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
						match = false
					}
				}
				if !match {
					continue
				}
				got := m.GetGauge().GetValue() + m.GetCounter().GetValue()
				if got == want {
					return
				}
				last = fmt.Sprint(got)
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("metric %s%v = %s, want %v", name, labels, last, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
