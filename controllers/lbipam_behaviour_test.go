package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/controllers"
)

// onlyFor limits a pool to one namespace, so each scenario has its own.
func onlyFor(p *v1alpha1.IPPool, ns string) *v1alpha1.IPPool {
	p.Spec.ServiceAllocation = &v1alpha1.ServiceAllocation{Namespaces: []string{ns}}
	return p
}

func annotate(k, v string) func(*corev1.Service) {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

func withPorts(proto corev1.Protocol, port int32) func(*corev1.Service) {
	return func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: "p", Port: port, Protocol: proto}}
	}
}

func TestLBIPAM(t *testing.T) {
	e := newLBEnv(t, nil)
	e.startController()
	ctx := context.Background()

	t.Run("allocates and reports", func(t *testing.T) {
		e.t = t
		e.namespace("basic", nil)
		e.create(onlyFor(ippool("basic", "192.0.2.0/29"), "basic"))
		e.create(lbService("basic", "s1"))
		svc := e.hasIPs("basic", "s1", "192.0.2.0")
		c := meta.FindStatusCondition(svc.Status.Conditions, controllers.ConditionAddressAllocated)
		if !strings.Contains(c.Message, "from pool basic") {
			t.Errorf("condition message %q does not name the pool", c.Message)
		}
		e.event("basic", "s1", controllers.ReasonAllocated)
		e.metric("berth_controller_ipam_addresses", map[string]string{"pool": "basic", "family": "ipv4", "state": "in_use"}, 1)
		e.metric("berth_controller_ipam_addresses", map[string]string{"pool": "basic", "family": "ipv4", "state": "capacity"}, 8)
		e.waitPool("basic", "usage", func(p *v1alpha1.IPPool) error {
			u := p.Status.IPv4
			if u == nil || u.Capacity != "8" || u.InUse != 1 || u.Available != "7" {
				return fmt.Errorf("ipv4 usage %+v", u)
			}
			if !meta.IsStatusConditionTrue(p.Status.Conditions, v1alpha1.ConditionReady) || !meta.IsStatusConditionFalse(p.Status.Conditions, v1alpha1.ConditionConflicting) {
				return fmt.Errorf("conditions %+v", p.Status.Conditions)
			}
			return nil
		})
	})

	t.Run("other classes are never touched", func(t *testing.T) {
		e.t = t
		e.create(lbService("basic", "foreign", func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To("example.com/other") }))
		e.create(lbService("basic", "after"))
		e.hasIPs("basic", "after", "192.0.2.1")
		var f corev1.Service
		if err := e.c.Get(ctx, keyOf("basic", "foreign"), &f); err != nil {
			t.Fatal(err)
		}
		if len(f.Status.LoadBalancer.Ingress) != 0 || len(f.Status.Conditions) != 0 {
			t.Errorf("Service of another class was touched: %+v", f.Status)
		}
	})

	t.Run("requests are met exactly or left pending", func(t *testing.T) {
		e.t = t
		e.namespace("req", nil)
		manual := onlyFor(ippool("req", "192.0.2.16/29"), "req")
		manual.Spec.AutoAssign = ptr.To(false)
		e.create(manual)
		e.create(lbService("req", "plain"))
		e.pending("req", "plain", "NoPoolForService")
		e.event("req", "plain", controllers.ReasonAllocateFailed)
		e.create(lbService("req", "bypool", annotate("berth.dev/ip-pool", "req")))
		e.hasIPs("req", "bypool", "192.0.2.16")
		e.create(lbService("req", "byspec", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "192.0.2.20" }))
		e.hasIPs("req", "byspec", "192.0.2.20")
		e.create(lbService("req", "taken", annotate("berth.dev/load-balancer-ips", "192.0.2.20")))
		svc := e.pending("req", "taken", "RequestedIPInUse")
		if c := meta.FindStatusCondition(svc.Status.Conditions, controllers.ConditionAddressAllocated); !strings.Contains(c.Message, "req/byspec") {
			t.Errorf("pending reason %q does not name the holder", c.Message)
		}
		e.create(lbService("req", "nopool", annotate("berth.dev/ip-pool", "nope")))
		e.pending("req", "nopool", "UnknownPool")
		e.create(lbService("req", "garbage", annotate("berth.dev/load-balancer-ips", "not-an-ip")))
		e.pending("req", "garbage", "InvalidRequest")
	})

	t.Run("exhaustion, release and type change", func(t *testing.T) {
		e.t = t
		e.namespace("tiny", nil)
		e.create(onlyFor(ippool("tiny", "192.0.2.32/31"), "tiny"))
		e.create(lbService("tiny", "t1"))
		e.hasIPs("tiny", "t1", "192.0.2.32")
		e.create(lbService("tiny", "t2"))
		e.hasIPs("tiny", "t2", "192.0.2.33")
		e.create(lbService("tiny", "t3"))
		e.pending("tiny", "t3", "PoolExhausted")
		e.metric("berth_controller_ipam_allocation_failures_total", map[string]string{"reason": "PoolExhausted"}, 1)
		e.metric("berth_controller_ipam_addresses", map[string]string{"pool": "tiny", "family": "ipv4", "state": "available"}, 0)
		e.waitPool("tiny", "full", func(p *v1alpha1.IPPool) error {
			if u := p.Status.IPv4; u == nil || u.Available != "0" {
				return fmt.Errorf("usage %+v", u)
			}
			return nil
		})
		// Deleting t1 frees its address for the pending t3.
		if err := e.c.Delete(ctx, lbService("tiny", "t1")); err != nil {
			t.Fatal(err)
		}
		e.hasIPs("tiny", "t3", "192.0.2.32")
		// t2 stops being a LoadBalancer: its address and Berth's status go.
		t2 := lbService("tiny", "t2")
		e.update(t2, func() {
			t2.Spec.Type = corev1.ServiceTypeClusterIP
			t2.Spec.Ports[0].NodePort = 0
		})
		e.waitService("tiny", "t2", "status cleared", func(s *corev1.Service) error {
			if len(s.Status.LoadBalancer.Ingress) != 0 || meta.FindStatusCondition(s.Status.Conditions, controllers.ConditionAddressAllocated) != nil {
				return fmt.Errorf("status %+v", s.Status)
			}
			return nil
		})
		e.event("tiny", "t2", controllers.ReasonReleased)
		e.create(lbService("tiny", "t4"))
		e.hasIPs("tiny", "t4", "192.0.2.33")
	})

	t.Run("pool edits and deletion never move addresses", func(t *testing.T) {
		e.t = t
		e.namespace("edit", nil)
		e.create(onlyFor(ippool("edit", "192.0.2.48/29"), "edit"))
		e.create(lbService("edit", "e1"))
		e.hasIPs("edit", "e1", "192.0.2.48")
		first := onlyFor(ippool("edit2", "192.0.2.64/29"), "edit")
		first.Spec.ServiceAllocation.Priority = ptr.To(int32(0))
		e.create(first)
		e.create(lbService("edit", "e2"))
		e.hasIPs("edit", "e2", "192.0.2.64")
		e.hasIPs("edit", "e1", "192.0.2.48")
		// Shrink the pool so that e1's address leaves it.
		p := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "edit"}}
		e.update(p, func() { p.Spec.Addresses = []v1alpha1.Address{"192.0.2.56/29"} })
		e.waitService("edit", "e1", "warning", func(s *corev1.Service) error {
			c := meta.FindStatusCondition(s.Status.Conditions, controllers.ConditionAddressWarning)
			if c == nil || c.Reason != "AddressOutsidePools" {
				return fmt.Errorf("warning %+v", c)
			}
			return nil
		})
		e.hasIPs("edit", "e1", "192.0.2.48")
		e.event("edit", "e1", "AddressOutsidePools")
		if err := e.c.Delete(ctx, &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "edit2"}}); err != nil {
			t.Fatal(err)
		}
		e.waitService("edit", "e2", "warning", func(s *corev1.Service) error {
			if c := meta.FindStatusCondition(s.Status.Conditions, controllers.ConditionAddressWarning); c == nil {
				return fmt.Errorf("no warning")
			}
			return nil
		})
		e.hasIPs("edit", "e2", "192.0.2.64")
	})

	t.Run("sharing", func(t *testing.T) {
		e.t = t
		e.namespace("share", nil)
		e.create(onlyFor(ippool("share", "192.0.2.80/29"), "share"))
		key := annotate("berth.dev/allow-shared-ip", "k")
		e.create(lbService("share", "web", key))
		e.hasIPs("share", "web", "192.0.2.80")
		e.create(lbService("share", "dns", key, withPorts(corev1.ProtocolUDP, 53)))
		e.hasIPs("share", "dns", "192.0.2.80")
		e.create(lbService("share", "web2", key))
		e.hasIPs("share", "web2", "192.0.2.81")
		e.create(lbService("share", "nokey", withPorts(corev1.ProtocolTCP, 443), annotate("berth.dev/load-balancer-ips", "192.0.2.80")))
		e.pending("share", "nokey", "RequestedIPInUse")
	})

	t.Run("conflicts and bad pools", func(t *testing.T) {
		e.t = t
		e.create(ippool("clash", "10.0.0.0/28"))
		e.waitPool("clash", "conflicting with the service CIDR", func(p *v1alpha1.IPPool) error {
			c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionConflicting)
			if c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "service CIDR") {
				return fmt.Errorf("conflicting %+v", c)
			}
			if u := p.Status.IPv4; u == nil || u.Capacity != "0" {
				return fmt.Errorf("usage %+v", u)
			}
			return nil
		})
		e.create(onlyFor(ippool("overlap", "192.0.2.4-192.0.2.9"), "nobody"))
		e.waitPool("basic", "conflicting with pool overlap", func(p *v1alpha1.IPPool) error {
			if c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionConflicting); c == nil || !strings.Contains(c.Message, "pool overlap") {
				return fmt.Errorf("conflicting %+v", c)
			}
			return nil
		})
		// An IPv6 range the wrong way round passes the schema but not the
		// controller; the other pools keep working.
		e.create(ippool("backwards", "2001:db8::9-2001:db8::1"))
		e.waitPool("backwards", "not ready", func(p *v1alpha1.IPPool) error {
			c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReady)
			if c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonInvalidAddresses {
				return fmt.Errorf("ready %+v", c)
			}
			return nil
		})
		// A pool over special-purpose addresses (here all of IPv4, with
		// loopback, multicast and broadcast) is refused, saying which.
		e.create(onlyFor(ippool("everything", "0.0.0.0/0"), "nobody"))
		e.waitPool("everything", "refused", func(p *v1alpha1.IPPool) error {
			c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReady)
			if c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonInvalidAddresses || !strings.Contains(c.Message, "which no LoadBalancer can use") {
				return fmt.Errorf("ready %+v", c)
			}
			return nil
		})
		e.create(lbService("basic", "stillworks"))
		e.hasIPs("basic", "stillworks", "192.0.2.2")
	})
}

func TestLBIPAMDualStack(t *testing.T) {
	e := newLBEnv(t, map[string]string{"service-cluster-ip-range": "10.0.0.0/24,fd00:10:96::/108"})
	e.startController()
	dual := func(policy corev1.IPFamilyPolicy, fams ...corev1.IPFamily) func(*corev1.Service) {
		return func(s *corev1.Service) {
			s.Spec.IPFamilyPolicy = &policy
			s.Spec.IPFamilies = fams
		}
	}
	e.namespace("both", nil)
	e.create(onlyFor(ippool("both", "192.0.2.0/30", "2001:db8::/126"), "both"))
	e.create(lbService("both", "req", dual(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv6Protocol, corev1.IPv4Protocol)))
	e.hasIPs("both", "req", "2001:db8::", "192.0.2.0")
	e.create(lbService("both", "v6", dual(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol)))
	e.hasIPs("both", "v6", "2001:db8::1")
	e.create(lbService("both", "asked", dual(corev1.IPFamilyPolicyPreferDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol),
		annotate("berth.dev/load-balancer-ips", "192.0.2.3,2001:db8::3")))
	e.hasIPs("both", "asked", "192.0.2.3", "2001:db8::3")

	e.namespace("v4only", nil)
	e.create(onlyFor(ippool("v4only", "198.51.100.0/30"), "v4only"))
	e.create(lbService("v4only", "req", dual(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol)))
	svc := e.pending("v4only", "req", "DualStackUnavailable")
	if c := meta.FindStatusCondition(svc.Status.Conditions, controllers.ConditionAddressAllocated); !strings.Contains(c.Message, "IPv6") {
		t.Errorf("reason %q does not name the missing family", c.Message)
	}
	e.create(lbService("v4only", "pref", dual(corev1.IPFamilyPolicyPreferDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol)))
	e.hasIPs("v4only", "pref", "198.51.100.0")
	e.waitService("v4only", "pref", "partial warning", func(s *corev1.Service) error {
		if c := meta.FindStatusCondition(s.Status.Conditions, controllers.ConditionAddressWarning); c == nil || c.Reason != "PartialDualStack" {
			return fmt.Errorf("warning %+v", c)
		}
		return nil
	})
	e.waitPool("both", "dual usage", func(p *v1alpha1.IPPool) error {
		if p.Status.IPv4 == nil || p.Status.IPv6 == nil || p.Status.IPv6.InUse != 3 || p.Status.IPv6.Capacity != "4" {
			return fmt.Errorf("usage v4 %+v v6 %+v", p.Status.IPv4, p.Status.IPv6)
		}
		return nil
	})
}
