package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/berthnet/berth/ipam"
	"github.com/berthnet/berth/ipam/kube"
)

// Conditions Berth sets on the Services it serves.
const (
	// ConditionAddressAllocated is True with the pool(s) that gave the
	// Service its addresses, or False with why it has none.
	ConditionAddressAllocated = "berth.dev/AddressAllocated"
	// ConditionAddressWarning is True while an address the Service holds
	// needs the operator's eye (outside every pool, half of dual-stack).
	ConditionAddressWarning = "berth.dev/AddressWarning"
)

// Event reasons not already named by the allocator.
const (
	ReasonAllocated      = "Allocated"
	ReasonReleased       = "Released"
	ReasonAllocateFailed = "AllocationFailed"
)

// serviceLBReconciler gives served LoadBalancer Services their addresses and
// writes the result to their status.
type serviceLBReconciler struct {
	client   client.Client
	state    *lbState
	recorder events.EventRecorder
	metrics  *ipamMetrics
	// pokePools asks the pool status reconciler to refresh; pokePending
	// requeues the Services still waiting for an address.
	pokePools   func()
	pokePending func()
}

// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=services/status,verbs=update;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=servicecidrs,verbs=get;list;watch

// Reconcile decides under the allocator's lock and writes the Service's
// status after releasing it, so that status writes, the slow part, run in
// parallel across Services while allocation stays serial.
func (r *serviceLBReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	write, err := r.decide(ctx, req)
	if err != nil || write == nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, write()
}

// statusWrite is a status update decided under the lock, done after it.
type statusWrite func() error

func (r *serviceLBReconciler) decide(ctx context.Context, req ctrl.Request) (statusWrite, error) {
	s := r.state
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensure(ctx); err != nil {
		return nil, err
	}
	key := kube.Key(req.Namespace, req.Name)
	log := logf.FromContext(ctx).WithValues("service", key)

	var svc corev1.Service
	if err := r.client.Get(ctx, req.NamespacedName, &svc); err != nil {
		if !apierrors.IsNotFound(err) {
			return nil, err
		}
		if released := s.alloc.Release(key); len(released) > 0 {
			log.Info("released addresses of deleted Service", "addresses", released)
			r.changed()
			r.released()
		}
		delete(s.duplicates, key)
		return nil, nil
	}

	if !kube.Served(&svc, s.opts.ServeUnclassed) {
		delete(s.duplicates, key)
		released := s.alloc.Release(key)
		if len(released) == 0 {
			return nil, nil
		}
		r.changed()
		r.released()
		log.Info("released addresses of a Service Berth no longer serves", "addresses", released)
		// A Service of another class is never touched. One that stopped
		// being a LoadBalancer loses the status Berth wrote.
		if !kube.OursByClass(&svc, s.opts.ServeUnclassed) {
			return nil, nil
		}
		r.recorder.Eventf(&svc, nil, corev1.EventTypeNormal, ReasonReleased, "Release", "released %s: the Service is no longer of type LoadBalancer", joinAddrs(released))
		return r.writeStatus(ctx, &svc, nil, nil, nil)
	}

	reqNS := kube.RequestNamespace(&svc, s.opts.FleetNamespace)
	nsLabels, err := s.namespaceLabels(ctx, reqNS, nil)
	if err != nil {
		return nil, err
	}
	request, reqErr := kube.Request(&svc, nsLabels)
	request.Namespace = reqNS

	if msg, dup := s.duplicates[key]; dup {
		addrs, _ := kube.StatusAddrs(&svc)
		if reqErr != nil {
			request = ipam.Request{Key: key, Namespace: reqNS}
		}
		if err := s.restore(request, addrs); err != nil {
			// Leave its addresses as they are and say why.
			cond := metav1.Condition{Type: ConditionAddressAllocated, Status: metav1.ConditionFalse, Reason: ipam.ReasonDuplicate, Message: err.Error()}
			if msg != err.Error() || !hasCondition(&svc, cond) {
				r.recorder.Eventf(&svc, nil, corev1.EventTypeWarning, ipam.ReasonDuplicate, "Allocate", "%s", err.Error())
			}
			s.duplicates[key] = err.Error()
			return r.writeConditions(ctx, &svc, cond)
		}
		delete(s.duplicates, key)
		log.Info("the address this Service shows is no longer held by another; it keeps it")
	}

	var res ipam.Result
	var allocErr error
	if reqErr != nil {
		allocErr = &ipam.Error{Reason: ipam.ReasonInvalidRequest, Message: reqErr.Error()}
		if released := s.alloc.Release(key); len(released) > 0 {
			res.Changed, res.Released = true, released
		}
	} else {
		res, allocErr = s.alloc.Assign(request)
	}
	if res.Changed {
		r.changed()
	}
	if len(res.Released) > 0 {
		// What it let go of may be what a pending Service waits for.
		r.released()
	}

	var cond metav1.Condition
	if allocErr != nil {
		reason := ipam.ReasonInvalidRequest
		if e, ok := allocErr.(*ipam.Error); ok {
			reason = e.Reason
		}
		cond = metav1.Condition{Type: ConditionAddressAllocated, Status: metav1.ConditionFalse, Reason: reason, Message: allocErr.Error()}
		if !hasCondition(&svc, cond) {
			r.metrics.failures.WithLabelValues(reason).Inc()
			r.recorder.Eventf(&svc, nil, corev1.EventTypeWarning, ReasonAllocateFailed, "Allocate", "no address: %s", allocErr.Error())
			log.Info("cannot allocate", "reason", reason, "message", allocErr.Error())
		}
	} else {
		cond = metav1.Condition{Type: ConditionAddressAllocated, Status: metav1.ConditionTrue, Reason: ReasonAllocated, Message: describeAssigned(res.IPs)}
		if res.Changed {
			r.recorder.Eventf(&svc, nil, corev1.EventTypeNormal, ReasonAllocated, "Allocate", "%s", describeAssigned(res.IPs))
			log.Info("allocated", "addresses", describeAssigned(res.IPs))
		}
	}
	var warn *metav1.Condition
	if len(res.Warnings) > 0 {
		msgs := make([]string, len(res.Warnings))
		for i, w := range res.Warnings {
			msgs[i] = w.Message
		}
		warn = &metav1.Condition{Type: ConditionAddressWarning, Status: metav1.ConditionTrue, Reason: res.Warnings[0].Reason, Message: strings.Join(msgs, "; ")}
		if !hasCondition(&svc, *warn) {
			r.recorder.Eventf(&svc, nil, corev1.EventTypeWarning, warn.Reason, "Allocate", "%s", warn.Message)
		}
	}
	return r.writeStatus(ctx, &svc, res.IPs, &cond, warn)
}

func (r *serviceLBReconciler) released() {
	if r.pokePending != nil {
		r.pokePending()
	}
}

func (r *serviceLBReconciler) changed() {
	if r.pokePools != nil {
		r.pokePools()
	}
}

// writeStatus sets the ingress addresses and Berth's conditions; with a nil
// cond it removes them. It writes only when something differs, so a restart
// of the controller writes nothing.
func (r *serviceLBReconciler) writeStatus(ctx context.Context, svc *corev1.Service, ips []ipam.Assigned, cond, warn *metav1.Condition) (statusWrite, error) {
	next := svc.Status.DeepCopy()
	next.LoadBalancer.Ingress = kube.Ingress(ips)
	if len(next.LoadBalancer.Ingress) == 0 {
		next.LoadBalancer.Ingress = nil
	}
	if cond != nil {
		cond.ObservedGeneration = svc.Generation
		meta.SetStatusCondition(&next.Conditions, *cond)
	} else {
		meta.RemoveStatusCondition(&next.Conditions, ConditionAddressAllocated)
	}
	if warn != nil {
		warn.ObservedGeneration = svc.Generation
		meta.SetStatusCondition(&next.Conditions, *warn)
	} else {
		meta.RemoveStatusCondition(&next.Conditions, ConditionAddressWarning)
	}
	return r.patchStatus(ctx, svc, next)
}

// writeConditions sets one condition and leaves the addresses alone.
func (r *serviceLBReconciler) writeConditions(ctx context.Context, svc *corev1.Service, cond metav1.Condition) (statusWrite, error) {
	next := svc.Status.DeepCopy()
	cond.ObservedGeneration = svc.Generation
	meta.SetStatusCondition(&next.Conditions, cond)
	return r.patchStatus(ctx, svc, next)
}

func (r *serviceLBReconciler) patchStatus(ctx context.Context, svc *corev1.Service, next *corev1.ServiceStatus) (statusWrite, error) {
	if equality.Semantic.DeepEqual(&svc.Status, next) {
		return nil, nil
	}
	orig := svc.DeepCopy()
	updated := svc.DeepCopy()
	updated.Status = *next
	return func() error {
		// The optimistic lock makes a write based on a stale read fail and
		// retry, rather than overwrite a newer status.
		if err := r.client.Status().Patch(ctx, updated, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
			return fmt.Errorf("write status of %s/%s: %w", svc.Namespace, svc.Name, err)
		}
		return nil
	}, nil
}

// hasCondition reports whether the Service already shows this condition with
// the same status, reason and message.
func hasCondition(svc *corev1.Service, c metav1.Condition) bool {
	cur := meta.FindStatusCondition(svc.Status.Conditions, c.Type)
	return cur != nil && cur.Status == c.Status && cur.Reason == c.Reason && cur.Message == c.Message
}

func describeAssigned(ips []ipam.Assigned) string {
	parts := make([]string, len(ips))
	for i, ip := range ips {
		if ip.Pool == "" {
			parts[i] = ip.Addr.String() + " (in no pool)"
		} else {
			parts[i] = ip.Addr.String() + " from pool " + ip.Pool
		}
	}
	return strings.Join(parts, ", ")
}

func joinAddrs[T fmt.Stringer](as []T) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
