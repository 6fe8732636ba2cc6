package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/berthnet/berth/api/v1alpha1"
)

// Reasons of the Ready condition of BGPPeers and BGPAnnouncements.
const (
	// ReasonPeerReady: True, the spec is valid and no node leaves the
	// peer out.
	ReasonPeerReady = "Valid"
	// ReasonNodesLeaveOut: False, a node's status entry says Configured
	// False (its password Secret missing or not readable, its address
	// in a cluster range); the message names the nodes and why.
	ReasonNodesLeaveOut = "NodesLeaveOut"
	// ReasonAnnouncementReady: True, it announces existing pools to
	// existing peers.
	ReasonAnnouncementReady = "Accepted"
	// ReasonInvalidAnnouncement: False, a selector or community does not
	// parse; the agents leave it out.
	ReasonInvalidAnnouncement = "InvalidAnnouncement"
	// ReasonNoPools and ReasonNoPeers: False, nothing to announce, or
	// nobody to announce it to.
	ReasonNoPools = "NoPools"
	ReasonNoPeers = "NoPeers"
)

// verdict is one Ready condition.
type verdict struct {
	status          metav1.ConditionStatus
	reason, message string
}

// peerReady decides a BGPPeer's Ready condition from its spec and the
// nodes' entries in its status (written by the agents): False when the
// spec is one the speaker cannot run or a node leaves the peer out; the
// message counts the nodes whose session is Established.
func peerReady(p *v1alpha1.BGPPeer) verdict {
	// The spec alone: the Secret's content is the nodes' to judge.
	secrets := map[string]*corev1.Secret{}
	if ref := p.Spec.PasswordSecret; ref != nil {
		secrets[ref.Name] = &corev1.Secret{Data: map[string][]byte{ref.Key: []byte("-")}}
	}
	if _, err := peer(p, secrets); err != nil {
		return verdict{metav1.ConditionFalse, v1alpha1.ReasonInvalidPeer, bounded(err.Error()+"; the nodes leave this peer out", 1000)}
	}
	var out []string
	up := 0
	for _, n := range p.Status.Nodes {
		if n.State == v1alpha1.BGPSessionEstablished {
			up++
		}
		if c := meta.FindStatusCondition(n.Conditions, v1alpha1.BGPConditionConfigured); c != nil && c.Status == metav1.ConditionFalse {
			out = append(out, fmt.Sprintf("%s (%s: %s)", n.Node, c.Reason, c.Message))
		}
	}
	sort.Strings(out)
	if len(out) > 0 {
		msg := fmt.Sprintf("%d of %d nodes leave the peer out: ", len(out), len(p.Status.Nodes))
		if len(out) > 3 {
			out = append(out[:3], fmt.Sprintf("and %d more", len(out)-3))
		}
		return verdict{metav1.ConditionFalse, ReasonNodesLeaveOut, bounded(msg+strings.Join(out, "; "), 1000)}
	}
	return verdict{metav1.ConditionTrue, ReasonPeerReady, fmt.Sprintf("valid; sessions Established on %d of the %d nodes that peer with it", up, len(p.Status.Nodes))}
}

// announcementReady decides a BGPAnnouncement's Ready condition from its
// spec and the IPPools and BGPPeers that exist.
func announcementReady(a *v1alpha1.BGPAnnouncement, pools []v1alpha1.IPPool, peers []v1alpha1.BGPPeer) verdict {
	ann, err := announcement(a, pools)
	if err != nil {
		return verdict{metav1.ConditionFalse, ReasonInvalidAnnouncement, bounded(err.Error()+"; the agents leave this announcement out", 1000)}
	}
	if len(ann.Pools) == 0 {
		return verdict{metav1.ConditionFalse, ReasonNoPools, "no existing IPPool matches ipPools or ipPoolSelectors"}
	}
	var to []string
	for i := range peers {
		if anySelects(ann.PeerSelectors, labels.Set(peers[i].Labels)) {
			to = append(to, peers[i].Name)
		}
	}
	if len(to) == 0 {
		return verdict{metav1.ConditionFalse, ReasonNoPeers, "no BGPPeer matches peerSelectors"}
	}
	sort.Strings(to)
	return verdict{metav1.ConditionTrue, ReasonAnnouncementReady,
		bounded(fmt.Sprintf("announces %s to %s", names(ann.Pools, "IPPool"), names(to, "BGPPeer")), 1000)}
}

func anySelects(sels []labels.Selector, set labels.Set) bool {
	if len(sels) == 0 {
		return true
	}
	for _, s := range sels {
		if s.Matches(set) {
			return true
		}
	}
	return false
}

// names lists up to ten names of a kind.
func names(ns []string, kind string) string {
	if len(ns) == 1 {
		return kind + " " + ns[0]
	}
	more := ""
	if len(ns) > 10 {
		more = fmt.Sprintf(" and %d more", len(ns)-10)
		ns = ns[:10]
	}
	return kind + "s " + strings.Join(ns, ", ") + more
}

// ReadyWriter writes the Ready condition of BGPPeers and BGPAnnouncements
// (berth-controller runs it: one writer, whatever the number of nodes).
type ReadyWriter struct {
	Client client.Client
}

// SetupReady registers the two reconcilers with mgr: a BGPPeer is judged
// again when it changes (its status.nodes too), a BGPAnnouncement when it,
// an IPPool or a BGPPeer changes.
func SetupReady(mgr manager.Manager) error {
	w := &ReadyWriter{Client: mgr.GetClient()}
	if err := ctrl.ControllerManagedBy(mgr).Named("bgppeer-ready").For(&v1alpha1.BGPPeer{}).
		Complete(reconcile.Func(w.ReconcilePeer)); err != nil {
		return err
	}
	all := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		var list v1alpha1.BGPAnnouncementList
		if err := mgr.GetClient().List(ctx, &list); err != nil {
			return nil
		}
		out := make([]reconcile.Request, 0, len(list.Items))
		for i := range list.Items {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: list.Items[i].Name}})
		}
		return out
	})
	return ctrl.ControllerManagedBy(mgr).Named("bgpannouncement-ready").For(&v1alpha1.BGPAnnouncement{}).
		Watches(&v1alpha1.IPPool{}, all).Watches(&v1alpha1.BGPPeer{}, all).
		Complete(reconcile.Func(w.ReconcileAnnouncement))
}

// ReconcilePeer writes one BGPPeer's Ready condition.
func (w *ReadyWriter) ReconcilePeer(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var p v1alpha1.BGPPeer
	if err := w.Client.Get(ctx, req.NamespacedName, &p); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	v := peerReady(&p)
	next := p.Status.DeepCopy()
	next.ObservedGeneration = p.Generation
	meta.SetStatusCondition(&next.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, Status: v.status, Reason: v.reason,
		Message: v.message, ObservedGeneration: p.Generation})
	if equality.Semantic.DeepEqual(&p.Status, next) {
		return reconcile.Result{}, nil
	}
	// A merge patch of the conditions and generation only: status.nodes
	// is the agents' (server-side apply, one field manager each).
	body, err := json.Marshal(map[string]any{"status": map[string]any{
		"conditions": next.Conditions, "observedGeneration": next.ObservedGeneration}})
	if err != nil {
		return reconcile.Result{}, err
	}
	if err := w.Client.Status().Patch(ctx, &p, client.RawPatch(types.MergePatchType, body)); err != nil {
		return reconcile.Result{}, fmt.Errorf("write Ready of BGPPeer %s: %w", p.Name, err)
	}
	return reconcile.Result{}, nil
}

// ReconcileAnnouncement writes one BGPAnnouncement's Ready condition.
func (w *ReadyWriter) ReconcileAnnouncement(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var a v1alpha1.BGPAnnouncement
	if err := w.Client.Get(ctx, req.NamespacedName, &a); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	var pools v1alpha1.IPPoolList
	var peers v1alpha1.BGPPeerList
	if err := w.Client.List(ctx, &pools); err != nil {
		return reconcile.Result{}, err
	}
	if err := w.Client.List(ctx, &peers); err != nil {
		return reconcile.Result{}, err
	}
	v := announcementReady(&a, pools.Items, peers.Items)
	orig := a.DeepCopy()
	a.Status.ObservedGeneration = a.Generation
	meta.SetStatusCondition(&a.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, Status: v.status, Reason: v.reason,
		Message: v.message, ObservedGeneration: a.Generation})
	if equality.Semantic.DeepEqual(&orig.Status, &a.Status) {
		return reconcile.Result{}, nil
	}
	if err := w.Client.Status().Patch(ctx, &a, client.MergeFrom(orig)); err != nil {
		return reconcile.Result{}, fmt.Errorf("write Ready of BGPAnnouncement %s: %w", a.Name, err)
	}
	return reconcile.Result{}, nil
}
