package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/controllers"
)

// A restarted controller rebuilds its state from the Services before it
// assigns anything: 500 Services of every kind keep their status to the
// byte (no write at all), and a new Service gets an address none of them
// holds.
func TestLBIPAMRestartChangesNothing(t *testing.T) {
	e := newLBEnv(t, map[string]string{"service-cluster-ip-range": "10.0.0.0/16"})
	e.startController()
	ctx := context.Background()
	e.create(ippool("big", "100.64.0.0/22"))
	namespaces := []string{"r0", "r1", "r2", "r3", "r4"}
	for _, ns := range namespaces {
		e.namespace(ns, nil)
	}
	const n = 500
	for i := range n {
		ns := namespaces[i%len(namespaces)]
		var mut []func(*corev1.Service)
		switch i % 10 {
		case 0: // pairs share an address
			mut = append(mut, annotate("berth.dev/allow-shared-ip", fmt.Sprintf("pair%d", i/20)), withPorts(corev1.ProtocolTCP, int32(80+i%20)))
		case 3: // asks for a specific address high in the pool
			mut = append(mut, annotate("berth.dev/load-balancer-ips", fmt.Sprintf("100.64.3.%d", i/10)))
		case 7: // names the pool
			mut = append(mut, annotate("berth.dev/ip-pool", "big"))
		}
		e.create(lbService(ns, fmt.Sprintf("svc%03d", i), mut...))
	}
	before := waitAllServed(t, e, namespaces, n)

	e.stopController()
	e.startController()
	e.create(lbService("r0", "sentinel"))
	sentinel := e.waitService("r0", "sentinel", "address", func(s *corev1.Service) error {
		if len(s.Status.LoadBalancer.Ingress) != 1 {
			return fmt.Errorf("no address yet")
		}
		return nil
	})
	got := sentinel.Status.LoadBalancer.Ingress[0].IP
	after := listServed(t, e, namespaces)
	for key, b := range before {
		a, ok := after[key]
		if !ok {
			t.Fatalf("%s vanished", key)
		}
		if a.ResourceVersion != b.ResourceVersion || !equality.Semantic.DeepEqual(a.Status, b.Status) {
			t.Errorf("%s changed across the restart:\nbefore %+v\nafter  %+v", key, b.Status, a.Status)
		}
		for _, ing := range a.Status.LoadBalancer.Ingress {
			if ing.IP == got && !strings.Contains(key, "sentinel") {
				t.Errorf("sentinel got %s, which %s holds", got, key)
			}
		}
	}

	// Two Services showing one address (a restored backup, say) are found
	// at start-up: the older keeps it, the newer is reported, neither moves.
	e.stopController()
	e.create(lbService("r1", "dup-a"))
	e.create(lbService("r1", "dup-b"))
	for _, name := range []string{"dup-a", "dup-b"} {
		svc := &corev1.Service{}
		if err := e.c.Get(ctx, keyOf("r1", name), svc); err != nil {
			t.Fatal(err)
		}
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "100.64.3.250"}}
		if err := e.c.Status().Update(ctx, svc); err != nil {
			t.Fatal(err)
		}
	}
	e.startController()
	dup := e.waitService("r1", "dup-b", "reported as duplicate", func(s *corev1.Service) error {
		c := meta.FindStatusCondition(s.Status.Conditions, controllers.ConditionAddressAllocated)
		if c == nil || c.Reason != "DuplicateAddress" || !strings.Contains(c.Message, "r1/dup-a") {
			return fmt.Errorf("condition %+v", c)
		}
		return nil
	})
	if ing := dup.Status.LoadBalancer.Ingress; len(ing) != 1 || ing[0].IP != "100.64.3.250" {
		t.Errorf("duplicate was moved: %v", ing)
	}
	e.event("r1", "dup-b", "DuplicateAddress")
	// Once the older one goes, the newer keeps the address, now uncontested.
	if err := e.c.Delete(ctx, lbService("r1", "dup-a")); err != nil {
		t.Fatal(err)
	}
	e.hasIPs("r1", "dup-b", "100.64.3.250")
}

func listServed(t *testing.T, e *lbEnv, namespaces []string) map[string]corev1.Service {
	t.Helper()
	out := map[string]corev1.Service{}
	for _, ns := range namespaces {
		var l corev1.ServiceList
		if err := e.c.List(context.Background(), &l, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		for _, s := range l.Items {
			out[ns+"/"+s.Name] = s
		}
	}
	return out
}

func waitAllServed(t *testing.T, e *lbEnv, namespaces []string, n int) map[string]corev1.Service {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		all := listServed(t, e, namespaces)
		done := 0
		for _, s := range all {
			if len(s.Status.LoadBalancer.Ingress) > 0 {
				done++
			}
		}
		if done == n {
			return all
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d Services got addresses", done, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
