package controllers

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/ipam"
)

// poolStatusReconciler writes every IPPool's usage and conditions. All its
// triggers map to one key, so a burst of allocations costs one pass.
type poolStatusReconciler struct {
	client  client.Client
	state   *lbState
	metrics *ipamMetrics
}

// +kubebuilder:rbac:groups=berth.dev,resources=ippools,verbs=get;list;watch
// +kubebuilder:rbac:groups=berth.dev,resources=ippools/status,verbs=update;patch

func (r *poolStatusReconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	s := r.state
	s.mu.Lock()
	if err := s.ensure(ctx); err != nil {
		s.mu.Unlock()
		return ctrl.Result{}, err
	}
	reports := map[string]ipam.PoolReport{}
	all := s.alloc.Reports()
	for _, rep := range all {
		reports[rep.Name] = rep
	}
	poolErrors := make(map[string]poolError, len(s.poolErrors))
	for k, v := range s.poolErrors {
		poolErrors[k] = v
	}
	s.mu.Unlock()
	r.metrics.setPools(all)

	var pools v1alpha1.IPPoolList
	if err := r.client.List(ctx, &pools); err != nil {
		return ctrl.Result{}, err
	}
	for i := range pools.Items {
		p := &pools.Items[i]
		next := p.Status.DeepCopy()
		next.ObservedGeneration = p.Generation
		rep, ok := reports[p.Name]
		pe, bad := poolErrors[p.Name]
		switch {
		case bad:
			next.IPv4, next.IPv6 = nil, nil
			setPoolCondition(next, p, v1alpha1.ConditionReady, metav1.ConditionFalse, pe.reason, pe.message)
			meta.RemoveStatusCondition(&next.Conditions, v1alpha1.ConditionConflicting)
		case ok:
			next.IPv4 = usage(rep.Usage, ipam.IPv4)
			next.IPv6 = usage(rep.Usage, ipam.IPv6)
			setPoolCondition(next, p, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonValid, "the pool's addresses are in use for LoadBalancer Services")
			if len(rep.Conflicts) > 0 {
				setPoolCondition(next, p, v1alpha1.ConditionConflicting, metav1.ConditionTrue, v1alpha1.ReasonOverlaps,
					fmt.Sprintf("overlaps %s; overlapping addresses are handed out once, reserved ones never", strings.Join(rep.Conflicts, ", ")))
			} else {
				setPoolCondition(next, p, v1alpha1.ConditionConflicting, metav1.ConditionFalse, v1alpha1.ReasonNoOverlap, "the pool overlaps nothing")
			}
		default:
			continue // created after the last config rebuild; its watch event brings it
		}
		if equality.Semantic.DeepEqual(&p.Status, next) {
			continue
		}
		orig := p.DeepCopy()
		p.Status = *next
		if err := r.client.Status().Patch(ctx, p, client.MergeFrom(orig)); err != nil {
			return ctrl.Result{}, fmt.Errorf("write status of IPPool %s: %w", p.Name, err)
		}
	}
	return ctrl.Result{}, nil
}

func setPoolCondition(st *v1alpha1.IPPoolStatus, p *v1alpha1.IPPool, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: p.Generation})
}

func usage(u map[ipam.Family]ipam.Usage, f ipam.Family) *v1alpha1.AddressUsage {
	x, ok := u[f]
	if !ok {
		return nil
	}
	return &v1alpha1.AddressUsage{Capacity: x.Capacity.String(), InUse: x.InUse, Available: x.Available.String()}
}
