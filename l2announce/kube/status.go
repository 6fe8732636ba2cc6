package kube

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/l2announce"
)

// Reasons of the condition and events.
const (
	ReasonAnnounced       = "Announced"
	ReasonAddressConflict = "AddressConflict"
	ReasonNoAnnouncer     = "NoAnnouncer"
)

// StatusWriter puts what this node's announcer reports on the Services:
// the condition ConditionAnnounced (one part per address, so the nodes
// announcing a dual-stack Service's two addresses each write their own)
// and an event per change.
type StatusWriter struct {
	Client   client.Client
	Recorder events.EventRecorder
	Log      logr.Logger

	mu      sync.Mutex
	pending map[netip.Addr]l2announce.Report
	wake    chan struct{}
	once    sync.Once
}

func (w *StatusWriter) init() {
	w.once.Do(func() {
		w.pending = map[netip.Addr]l2announce.Report{}
		w.wake = make(chan struct{}, 1)
	})
}

// Report queues a report; only the latest per address is written. It
// never blocks.
func (w *StatusWriter) Report(r l2announce.Report) {
	w.init()
	w.mu.Lock()
	w.pending[r.Addr] = r
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Start writes queued reports until ctx ends; a failed write is retried.
func (w *StatusWriter) Start(ctx context.Context) error {
	w.init()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.wake:
		}
		w.mu.Lock()
		batch := w.pending
		w.pending = map[netip.Addr]l2announce.Report{}
		w.mu.Unlock()
		for addr, r := range batch {
			if err := w.write(ctx, r); err != nil {
				w.Log.Error(err, "write layer-2 status", "address", addr.String())
				w.mu.Lock()
				if _, newer := w.pending[addr]; !newer {
					w.pending[addr] = r
				}
				w.mu.Unlock()
				time.AfterFunc(time.Second, func() {
					select {
					case w.wake <- struct{}{}:
					default:
					}
				})
			}
		}
	}
}

func (w *StatusWriter) write(ctx context.Context, r l2announce.Report) error {
	for _, key := range r.Services {
		ns, name, _ := strings.Cut(key, "/")
		for attempt := 0; ; attempt++ {
			err := w.writeOne(ctx, client.ObjectKey{Namespace: ns, Name: name}, r)
			if err == nil || apierrors.IsNotFound(err) {
				break
			}
			if !apierrors.IsConflict(err) || attempt == 5 {
				return fmt.Errorf("service %s: %w", key, err)
			}
		}
	}
	return nil
}

func (w *StatusWriter) writeOne(ctx context.Context, key client.ObjectKey, r l2announce.Report) error {
	var svc corev1.Service
	if err := w.Client.Get(ctx, key, &svc); err != nil {
		return err
	}
	inStatus := map[netip.Addr]bool{}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(ing.IP); err == nil {
			inStatus[a.Unmap()] = true
		}
	}
	if !inStatus[r.Addr] {
		return nil // the address left the Service meanwhile
	}
	recs, err := Records(&svc)
	if err != nil {
		// Written over: the agents own the annotation.
		w.Log.Error(err, "replacing the layer-2 state annotation")
	}
	for a := range recs {
		if !inStatus[a] {
			delete(recs, a)
		}
	}
	recs[r.Addr] = recordOf(r)
	value := formatRecords(recs)
	cond := condition(recs)
	cond.ObservedGeneration = svc.Generation
	if cur := meta.FindStatusCondition(svc.Status.Conditions, ConditionAnnounced); cur != nil &&
		cur.Status == cond.Status && cur.Reason == cond.Reason && cur.Message == cond.Message &&
		svc.Annotations[AnnotationState] == value {
		return nil
	}
	orig := svc.DeepCopy()
	meta.SetStatusCondition(&svc.Status.Conditions, cond)
	if svc.Annotations == nil {
		svc.Annotations = map[string]string{}
	}
	svc.Annotations[AnnotationState] = value
	// One write to the status subresource carries both: a Service's
	// status write keeps its metadata changes (only spec is reset), and
	// the agent has no right to change Services otherwise.
	if err := w.Client.Status().Patch(ctx, &svc, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return err
	}
	typ, reason := corev1.EventTypeNormal, ReasonAnnounced
	switch r.State {
	case l2announce.Conflict:
		typ, reason = corev1.EventTypeWarning, ReasonAddressConflict
	case l2announce.NoAnnouncer:
		typ, reason = corev1.EventTypeWarning, ReasonNoAnnouncer
	}
	if w.Recorder != nil {
		w.Recorder.Eventf(&svc, nil, typ, reason, "Announce", "%s", r.Describe())
	}
	return nil
}

// condition sums up the records for people: True when every address is
// announced, else False with the reason of the first one that is not
// (by address order); the message has one part per address.
func condition(recs map[netip.Addr]Record) metav1.Condition {
	addrs := make([]netip.Addr, 0, len(recs))
	for a := range recs {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	c := metav1.Condition{Type: ConditionAnnounced, Status: metav1.ConditionTrue, Reason: ReasonAnnounced}
	msgs := make([]string, len(addrs))
	for i, a := range addrs {
		rec := recs[a]
		msgs[i] = rec.report(a).Describe()
		if c.Status == metav1.ConditionTrue && rec.State != l2announce.Announcing {
			c.Status, c.Reason = metav1.ConditionFalse, ReasonNoAnnouncer
			if rec.State == l2announce.Conflict {
				c.Reason = ReasonAddressConflict
			}
		}
	}
	c.Message = strings.Join(msgs, "; ")
	return c
}
