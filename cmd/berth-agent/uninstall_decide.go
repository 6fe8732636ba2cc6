package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// The agent reads its own DaemonSet, in its own namespace only, to tell
// an uninstall from a restart when it is stopped (see decideUninstall).
//
// +kubebuilder:rbac:groups=apps,resources=daemonsets,verbs=get;list;watch,namespace=berth-system

// selfRef names the agent's pod and the DaemonSet that runs it, as the
// pod's controller reference names it at start-up: no flag to get wrong,
// whatever the release is called.
type selfRef struct {
	Namespace, DaemonSet, Pod string
}

// dsSeen is what the watch of the agent's DaemonSet last saw.
type dsSeen struct {
	// Synced: the watch listed the DaemonSet at least once.
	Synced bool
	// Gone: its last event was the DaemonSet's deletion.
	Gone bool
	// Deleting: the DaemonSet it last saw has a deletionTimestamp.
	Deleting bool
	UID      types.UID
}

// verdict is the shutdown decision: remove this node's state, or keep it
// for the next agent, and why, in a sentence for the log and the Event.
type verdict struct {
	Uninstall bool
	// Unsure: the API did not answer the question (kept for safety).
	Unsure bool
	Reason string
}

// decideUninstall tells, when the agent is stopped, whether Berth is being
// uninstalled (remove everything it owns on the node) or restarted (keep
// it all: the next agent adopts it, hitless). Uninstall when the API says
// the agent's DaemonSet is gone: NotFound, a deletionTimestamp, or a live
// DaemonSet of that name with another UID than the one that owns this pod
// (deleted and made again). helm uninstall deletes the DaemonSet before the
// RBAC and the ServiceAccount, all at once, and the pods get SIGTERM only
// after the garbage collector saw the DaemonSet go: by then the agent's
// own reads are refused (403, or 401 once its ServiceAccount is gone), so a
// refusal falls back on the watch, established while the agent could read,
// which an RBAC change does not cut: it saw the deletion. Anything else (the
// API unreachable, a timeout, a refusal while the watch saw the DaemonSet
// live) keeps the node's state: a wrong "keep" leaves state an operator can
// clear; a wrong "remove" cuts every pod on the node.
//
// It uses the typed clientset: no discovery (a controller-runtime client's
// first read of a kind asks for the API's groups, one more request to be
// refused).
func decideUninstall(ctx context.Context, c kubernetes.Interface, self selfRef, seen dsSeen) verdict {
	name := self.Namespace + "/" + self.DaemonSet
	// The pod's owner is read now, not at start: a DaemonSet deleted with
	// --cascade=orphan and made again adopts the pods (new owner UID).
	var owner types.UID
	if self.Pod != "" {
		if pod, err := c.CoreV1().Pods(self.Namespace).Get(ctx, self.Pod, metav1.GetOptions{}); err == nil {
			if ref := metav1.GetControllerOf(pod); ref != nil && ref.Kind == "DaemonSet" && ref.Name == self.DaemonSet {
				owner = ref.UID
			}
		}
	}
	ds, err := c.AppsV1().DaemonSets(self.Namespace).Get(ctx, self.DaemonSet, metav1.GetOptions{})
	switch {
	case err == nil && ds.DeletionTimestamp != nil:
		return verdict{Uninstall: true, Reason: fmt.Sprintf("DaemonSet %s is being deleted", name)}
	case err == nil && owner != "" && ds.UID != owner:
		return verdict{Uninstall: true, Reason: fmt.Sprintf("this pod's DaemonSet (uid %s) was deleted; %s is another one (uid %s)", owner, name, ds.UID)}
	case err == nil:
		return verdict{Reason: fmt.Sprintf("DaemonSet %s is in place: a restart or a rolling update", name)}
	case apierrors.IsNotFound(err):
		return verdict{Uninstall: true, Reason: fmt.Sprintf("DaemonSet %s is gone", name)}
	case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
		switch {
		case seen.Gone:
			return verdict{Uninstall: true, Reason: fmt.Sprintf("the watch saw DaemonSet %s deleted, and the agent's rights are gone with it (%v)", name, shortErr(err))}
		case seen.Deleting:
			return verdict{Uninstall: true, Reason: fmt.Sprintf("the watch saw DaemonSet %s being deleted, and the agent's rights are gone with it (%v)", name, shortErr(err))}
		}
		return verdict{Unsure: true, Reason: fmt.Sprintf("cannot read DaemonSet %s (%v) and its watch did not see it deleted: keeping this node's state", name, shortErr(err))}
	}
	return verdict{Unsure: true, Reason: fmt.Sprintf("cannot tell whether DaemonSet %s is gone (%v): keeping this node's state", name, shortErr(err))}
}

// shortErr bounds an API error for a log line or an Event.
func shortErr(err error) string {
	s := err.Error()
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// dsWatch follows the agent's own DaemonSet from start-up until the
// shutdown decision. It has a context of its own, not the manager's: it
// must still run when the manager has stopped.
type dsWatch struct {
	mu      sync.Mutex
	seen    dsSeen
	changed chan struct{}
}

func newDSWatch() *dsWatch { return &dsWatch{changed: make(chan struct{}, 1)} }

// run watches namespace/name until ctx ends.
func (w *dsWatch) run(ctx context.Context, cs kubernetes.Interface, namespace, name string) {
	lw := cache.NewListWatchFromClient(cs.AppsV1().RESTClient(), "daemonsets", namespace, fields.OneTermEqualSelector("metadata.name", name))
	set := func(obj any) {
		ds, ok := obj.(*appsv1.DaemonSet)
		if !ok {
			return
		}
		w.update(dsSeen{Synced: true, Deleting: ds.DeletionTimestamp != nil, UID: ds.UID})
	}
	_, ctl := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: lw,
		ObjectType:    &appsv1.DaemonSet{},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    set,
			UpdateFunc: func(_, obj any) { set(obj) },
			DeleteFunc: func(any) { w.update(dsSeen{Synced: true, Gone: true}) },
		},
	})
	go func() {
		// An empty first list (no DaemonSet of that name) is news too.
		if cache.WaitForCacheSync(ctx.Done(), ctl.HasSynced) {
			w.mu.Lock()
			if !w.seen.Synced {
				w.seen = dsSeen{Synced: true, Gone: true}
			}
			w.mu.Unlock()
			w.poke()
		}
	}()
	ctl.RunWithContext(ctx)
}

func (w *dsWatch) update(s dsSeen) {
	w.mu.Lock()
	w.seen = s
	w.mu.Unlock()
	w.poke()
}

func (w *dsWatch) poke() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// Seen returns what the watch last saw.
func (w *dsWatch) Seen() dsSeen {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen
}

// waitGone waits up to d for the watch to see the DaemonSet deleted (or
// being deleted), and returns what it saw last: the deletion may still be
// on its way when the agent's own read was refused.
func (w *dsWatch) waitGone(ctx context.Context, d time.Duration) dsSeen {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		s := w.Seen()
		if s.Gone || s.Deleting {
			return s
		}
		select {
		case <-w.changed:
		case <-t.C:
			return w.Seen()
		case <-ctx.Done():
			return w.Seen()
		}
	}
}
