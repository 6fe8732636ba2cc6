package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/berthnet/berth/api/v1alpha1"
)

// Reasons of an L2Announcement's Ready condition, besides
// v1alpha1.ReasonInvalidSelector (False: a selector does not parse) and
// v1alpha1.ReasonInvalidInterface (False: an interface pattern does not).
const (
	// ReasonL2Accepted: True, the announcement's selectors are valid and
	// it announces at least one existing IPPool.
	ReasonL2Accepted = "Accepted"
	// ReasonL2NoPools: False, no existing IPPool matches the announcement.
	ReasonL2NoPools = "NoPools"
)

// maxListedPools bounds how many pool names a condition message lists, so
// a cluster with thousands of pools keeps a readable status.
const maxListedPools = 32

// SetupL2AnnouncementStatus registers the reconciler that writes every
// L2Announcement's Ready condition: whether its selectors are valid and
// which IPPools it announces. IPPools coming, going or being relabelled
// re-check every announcement.
func SetupL2AnnouncementStatus(mgr ctrl.Manager) error {
	r := &l2StatusReconciler{client: mgr.GetClient(), recorder: mgr.GetEventRecorder("berth-controller")}
	allAnnouncements := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		var list v1alpha1.L2AnnouncementList
		if err := mgr.GetClient().List(ctx, &list); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "list L2Announcements for an IPPool change")
			return nil
		}
		out := make([]reconcile.Request, 0, len(list.Items))
		for i := range list.Items {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: list.Items[i].Name}})
		}
		return out
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("l2announcement-status").
		For(&v1alpha1.L2Announcement{}).
		// Creation and deletion pass too: the predicate filters updates only.
		Watches(&v1alpha1.IPPool{}, allAnnouncements, builder.WithPredicates(predicate.LabelChangedPredicate{})).
		Complete(r)
}

// l2StatusReconciler writes one L2Announcement's status from its spec and
// the IPPools that exist.
type l2StatusReconciler struct {
	client   client.Client
	recorder events.EventRecorder
}

// +kubebuilder:rbac:groups=berth.dev,resources=l2announcements,verbs=get;list;watch
// +kubebuilder:rbac:groups=berth.dev,resources=l2announcements/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=berth.dev,resources=ippools,verbs=get;list;watch

func (r *l2StatusReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var a v1alpha1.L2Announcement
	if err := r.client.Get(ctx, req.NamespacedName, &a); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var pools v1alpha1.IPPoolList
	if err := r.client.List(ctx, &pools); err != nil {
		return ctrl.Result{}, err
	}
	v := l2Ready(&a.Spec, pools.Items)

	var was *metav1.Condition
	if c := meta.FindStatusCondition(a.Status.Conditions, v1alpha1.ConditionReady); c != nil {
		was = c.DeepCopy()
	}
	next := a.Status.DeepCopy()
	next.ObservedGeneration = a.Generation
	meta.SetStatusCondition(&next.Conditions, metav1.Condition{
		Type: v1alpha1.ConditionReady, Status: v.status, Reason: v.reason, Message: v.message, ObservedGeneration: a.Generation,
	})
	if equality.Semantic.DeepEqual(&a.Status, next) {
		return ctrl.Result{}, nil
	}
	orig := a.DeepCopy()
	a.Status = *next
	if err := r.client.Status().Patch(ctx, &a, client.MergeFrom(orig)); err != nil {
		return ctrl.Result{}, fmt.Errorf("write status of L2Announcement %s: %w", a.Name, err)
	}
	// Warn once per new problem, after the write, so a retried write does
	// not repeat the event.
	if v.status == metav1.ConditionFalse && (was == nil || was.Status != metav1.ConditionFalse || was.Reason != v.reason) {
		r.recorder.Eventf(&a, nil, corev1.EventTypeWarning, v.reason, "Accept", "%s", v.message)
	}
	return ctrl.Result{}, nil
}

// l2Verdict is an L2Announcement's Ready condition.
type l2Verdict struct {
	status  metav1.ConditionStatus
	reason  string
	message string
}

// l2Ready decides an L2Announcement's Ready condition from its spec and
// the IPPools that exist. It reads nothing else.
func l2Ready(spec *v1alpha1.L2AnnouncementSpec, pools []v1alpha1.IPPool) l2Verdict {
	var bad []string
	poolSels := make([]labels.Selector, 0, len(spec.IPPoolSelectors))
	for i := range spec.IPPoolSelectors {
		s, err := metav1.LabelSelectorAsSelector(&spec.IPPoolSelectors[i])
		if err != nil {
			bad = append(bad, fmt.Sprintf("ipPoolSelectors[%d]: %v", i, err))
			continue
		}
		poolSels = append(poolSels, s)
	}
	for i := range spec.NodeSelectors {
		if _, err := metav1.LabelSelectorAsSelector(&spec.NodeSelectors[i]); err != nil {
			bad = append(bad, fmt.Sprintf("nodeSelectors[%d]: %v", i, err))
		}
	}
	if len(bad) == 0 {
		if err := spec.ValidateInterfaces(); err != nil {
			return l2Verdict{status: metav1.ConditionFalse, reason: v1alpha1.ReasonInvalidInterface,
				message: err.Error() + "; agents leave this announcement out"}
		}
	}
	if len(bad) > 0 {
		return l2Verdict{status: metav1.ConditionFalse, reason: v1alpha1.ReasonInvalidSelector,
			message: "invalid selector: " + strings.Join(bad, "; ") + " (operators are In, NotIn, Exists, DoesNotExist)"}
	}

	every := len(spec.IPPools) == 0 && len(spec.IPPoolSelectors) == 0
	named := make(map[string]bool, len(spec.IPPools))
	for _, n := range spec.IPPools {
		named[n] = true
	}
	exists := make(map[string]bool, len(pools))
	var matched []string
	for i := range pools {
		p := &pools[i]
		exists[p.Name] = true
		if every || named[p.Name] || anyMatches(poolSels, labels.Set(p.Labels)) {
			matched = append(matched, p.Name)
		}
	}
	slices.Sort(matched)
	var missing []string
	for _, n := range spec.IPPools {
		if !exists[n] {
			missing = append(missing, n)
		}
	}
	slices.Sort(missing)

	var notes []string
	if len(missing) > 0 {
		verb := "do"
		if len(missing) == 1 {
			verb = "does"
		}
		notes = append(notes, fmt.Sprintf("%s %s not exist", poolNames(missing), verb))
	}
	if len(matched) == 0 {
		switch {
		case every:
			notes = append(notes, "no IPPool exists")
		case len(spec.IPPoolSelectors) > 0:
			notes = append(notes, "no IPPool matches ipPoolSelectors")
		}
		return l2Verdict{status: metav1.ConditionFalse, reason: ReasonL2NoPools,
			message: "announces no pool: " + strings.Join(notes, "; ")}
	}
	msg := "announces " + poolNames(matched)
	if len(notes) > 0 {
		msg += "; " + strings.Join(notes, "; ")
	}
	return l2Verdict{status: metav1.ConditionTrue, reason: ReasonL2Accepted, message: msg}
}

func anyMatches(sels []labels.Selector, set labels.Set) bool {
	for _, s := range sels {
		if s.Matches(set) {
			return true
		}
	}
	return false
}

// poolNames is "pool a" or "pools a, b", eliding past maxListedPools.
func poolNames(names []string) string {
	if len(names) == 1 {
		return "pool " + names[0]
	}
	if len(names) <= maxListedPools {
		return "pools " + strings.Join(names, ", ")
	}
	return fmt.Sprintf("pools %s and %d more", strings.Join(names[:maxListedPools], ", "), len(names)-maxListedPools)
}
