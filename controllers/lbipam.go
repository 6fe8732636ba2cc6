// Package controllers holds Berth's reconcilers: they gather objects from
// the cache, call a pure core, and write status, events and metrics.
package controllers

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/ipam"
	"github.com/berthnet/berth/ipam/kube"
)

// LBIPAMOptions configure load-balancer address management.
type LBIPAMOptions struct {
	// ServeUnclassed: also serve LoadBalancer Services with no
	// loadBalancerClass (as the cluster's default load balancer).
	ServeUnclassed bool
	// ServiceCIDRs and ClusterCIDRs are reserved in addition to what the
	// cluster's ServiceCIDR objects and Nodes show.
	ServiceCIDRs []string
	ClusterCIDRs []string
	// FleetNamespace is Berth's own namespace, where the Services of
	// Gateways' Envoy fleets live: their requests count in their Gateway's
	// namespace (kube.RequestNamespace). Empty: every Service counts in
	// its own.
	FleetNamespace string
}

// lbState is the allocator and what the reconcilers know beside it. One
// mutex serializes every use: allocation is fast, and a single writer is
// what keeps two Services from ever getting one address.
type lbState struct {
	opts   LBIPAMOptions
	reader client.Reader

	mu          sync.Mutex
	alloc       *ipam.Allocator
	initialized bool
	// poolErrors holds the pools whose spec the allocator could not take,
	// with reason and message, for their Ready condition.
	poolErrors map[string]poolError
	// duplicates holds Services whose status address another Service
	// already held at start-up; they are reported, never moved.
	duplicates map[string]string

	// configDirty is set by watches of pools, nodes and service CIDRs and
	// makes the next reconcile rebuild the allocator's config.
	configDirty atomic.Bool
}

type poolError struct {
	reason, message string
}

func newLBState(opts LBIPAMOptions, reader client.Reader) *lbState {
	return &lbState{
		opts:       opts,
		reader:     reader,
		alloc:      ipam.New(),
		poolErrors: map[string]poolError{},
		duplicates: map[string]string{},
	}
}

// ensure makes sure the allocator is ready for use: on first use it loads
// the config and restores every served Service's addresses from status
// before any new assignment is made; later it rebuilds the config when a
// watch marked it dirty. Callers hold mu.
func (s *lbState) ensure(ctx context.Context) error {
	if !s.initialized {
		if err := s.rebuildConfig(ctx); err != nil {
			return err
		}
		if err := s.restoreAll(ctx); err != nil {
			return err
		}
		s.initialized = true
		return nil
	}
	if s.configDirty.Swap(false) {
		if err := s.rebuildConfig(ctx); err != nil {
			s.configDirty.Store(true)
			return err
		}
	}
	return nil
}

// rebuildConfig compiles every IPPool and the cluster's reserved ranges into
// the allocator's config. A pool with a bad spec is left out and reported;
// the others keep working.
func (s *lbState) rebuildConfig(ctx context.Context) error {
	var pools v1alpha1.IPPoolList
	if err := s.reader.List(ctx, &pools); err != nil {
		return fmt.Errorf("list IPPools: %w", err)
	}
	var nodes corev1.NodeList
	if err := s.reader.List(ctx, &nodes); err != nil {
		return fmt.Errorf("list Nodes: %w", err)
	}
	var cidrs networkingv1.ServiceCIDRList
	if err := s.reader.List(ctx, &cidrs); err != nil {
		return fmt.Errorf("list ServiceCIDRs: %w", err)
	}
	serviceCIDRs := append([]string(nil), s.opts.ServiceCIDRs...)
	for _, c := range cidrs.Items {
		serviceCIDRs = append(serviceCIDRs, c.Spec.CIDRs...)
	}
	cfg := ipam.Config{Reserved: kube.Reservations(serviceCIDRs, s.opts.ClusterCIDRs, nodes.Items)}
	s.poolErrors = map[string]poolError{}
	for i := range pools.Items {
		p := &pools.Items[i]
		if !p.DeletionTimestamp.IsZero() {
			continue
		}
		pool, reason, err := kube.Pool(p)
		if err != nil {
			s.poolErrors[p.Name] = poolError{reason: reason, message: err.Error()}
			continue
		}
		cfg.Pools = append(cfg.Pools, pool)
	}
	return s.alloc.SetConfig(cfg)
}

// restoreAll records the addresses every served Service already shows, the
// oldest Service first, so that of two Services showing one address (which
// Berth never causes, but a restore from backup or a second controller
// could) the older keeps it and the newer is reported.
func (s *lbState) restoreAll(ctx context.Context) error {
	var svcs corev1.ServiceList
	if err := s.reader.List(ctx, &svcs); err != nil {
		return fmt.Errorf("list Services: %w", err)
	}
	items := svcs.Items
	sort.SliceStable(items, func(i, j int) bool {
		a, b := items[i].CreationTimestamp, items[j].CreationTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return kube.Key(items[i].Namespace, items[i].Name) < kube.Key(items[j].Namespace, items[j].Name)
	})
	nsLabels := map[string]map[string]string{}
	restored := 0
	for i := range items {
		svc := &items[i]
		if !kube.Served(svc, s.opts.ServeUnclassed) {
			continue
		}
		addrs, _ := kube.StatusAddrs(svc)
		if len(addrs) == 0 {
			continue
		}
		reqNS := kube.RequestNamespace(svc, s.opts.FleetNamespace)
		labels, err := s.namespaceLabels(ctx, reqNS, nsLabels)
		if err != nil {
			return err
		}
		req, err := kube.Request(svc, labels)
		req.Namespace = reqNS
		if err != nil {
			// Restore what it holds under its key; the reconcile of the
			// Service will report the bad request.
			req = ipam.Request{Key: kube.Key(svc.Namespace, svc.Name), Namespace: reqNS}
		}
		if err := s.restore(req, addrs); err != nil {
			s.duplicates[req.Key] = err.Error()
			logf.FromContext(ctx).Info("Service shows an address another Service holds; leaving both as they are", "service", req.Key, "reason", err.Error())
			continue
		}
		restored++
	}
	logf.FromContext(ctx).Info("restored load-balancer addresses from Service status", "services", restored, "duplicates", len(s.duplicates))
	return nil
}

func (s *lbState) restore(req ipam.Request, addrs []netip.Addr) error {
	return s.alloc.Restore(req, addrs)
}

func (s *lbState) namespaceLabels(ctx context.Context, name string, cache map[string]map[string]string) (map[string]string, error) {
	if l, ok := cache[name]; ok {
		return l, nil
	}
	var ns corev1.Namespace
	if err := s.reader.Get(ctx, client.ObjectKey{Name: name}, &ns); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	if cache != nil {
		cache[name] = ns.Labels
	}
	return ns.Labels, nil
}
