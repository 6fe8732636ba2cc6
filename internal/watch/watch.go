// Package watch subscribes the agent's components to the shared
// informers, and coalesces the work their events ask for.
package watch

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/tools/cache"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Sub is one kind to watch: Func gets the object of every add and delete,
// and of an update both the old and the new object (an update can move an
// object out of what a component cares about, and into it).
type Sub struct {
	Object client.Object
	Func   func(client.Object)
	// Changed, when set, sees both objects of every update first: false
	// drops the update (Func is not called). Adds and deletes always pass.
	// A component that writes an object's status uses it (with
	// SpecChanged) not to take its own writes as new work.
	Changed func(old, obj client.Object) bool
}

// SpecChanged reports whether an update may have changed more than the
// object's status: its generation moved (or it has none), or its labels,
// annotations or deletion timestamp changed. For kinds whose spec bumps
// metadata.generation (custom resources with a status subresource,
// Ingresses), false means only status (or fields no reader of the spec
// looks at, such as managedFields) changed.
func SpecChanged(old, obj client.Object) bool {
	if obj.GetGeneration() == 0 || old.GetGeneration() != obj.GetGeneration() {
		return true
	}
	if (old.GetDeletionTimestamp() == nil) != (obj.GetDeletionTimestamp() == nil) {
		return true
	}
	return !maps.Equal(old.GetLabels(), obj.GetLabels()) || !maps.Equal(old.GetAnnotations(), obj.GetAnnotations())
}

// Subscribe adds the handlers to c's informers; call it before the cache
// starts.
func Subscribe(ctx context.Context, c crcache.Cache, subs ...Sub) error {
	for _, s := range subs {
		inf, err := c.GetInformer(ctx, s.Object)
		if err != nil {
			return err
		}
		fn := func(obj any) {
			if o := Object(obj); o != nil {
				s.Func(o)
			}
		}
		update := func(old, obj any) { fn(old); fn(obj) }
		if s.Changed != nil {
			update = func(old, obj any) {
				o, n := Object(old), Object(obj)
				if o != nil && n != nil && !s.Changed(o, n) {
					return
				}
				fn(old)
				fn(obj)
			}
		}
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: fn, DeleteFunc: fn, UpdateFunc: update,
		}); err != nil {
			return err
		}
	}
	return nil
}

// Object is the object of an event, also of a delete whose final state
// was missed.
func Object(obj any) client.Object {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	o, _ := obj.(client.Object)
	return o
}

// Trigger coalesces requests for work: Fire never blocks, and C yields
// one value for any number of Fires since it was last read. The zero value
// is ready.
//
// An informer calls an update handler for the old and the new object, so
// one change often Fires twice: the owner takes the first, and the second
// would ask for the same work again. Take and Done let the owner drop such
// a request: every Fire before Take is covered by work that starts after
// it (informers update their cache before they call handlers, so what
// Fired is in the cache the work reads).
type Trigger struct {
	once  sync.Once
	ch    chan struct{}
	fired atomic.Uint64
}

// Mark is how many Fires a Trigger had seen when work began.
type Mark uint64

func (t *Trigger) init() { t.once.Do(func() { t.ch = make(chan struct{}, 1) }) }

// Fire asks for the work to be done.
func (t *Trigger) Fire() {
	t.init()
	t.fired.Add(1)
	t.signal()
}

func (t *Trigger) signal() {
	select {
	case t.ch <- struct{}{}:
	default:
	}
}

// C is where the work's owner waits.
func (t *Trigger) C() <-chan struct{} {
	t.init()
	return t.ch
}

// Take is called as the work begins, before it reads anything.
func (t *Trigger) Take() Mark { return Mark(t.fired.Load()) }

// Done is called when the work that began at m succeeded: a request made
// by Fires before m is dropped, one made after is kept.
func (t *Trigger) Done(m Mark) {
	t.init()
	if t.fired.Load() != uint64(m) {
		return
	}
	select {
	case <-t.ch:
	default:
		return
	}
	// A Fire between the check and the drain found the channel full: its
	// count is visible now, and its request must stand.
	if t.fired.Load() != uint64(m) {
		t.signal()
	}
}

// DefaultResync is how often a component redoes its work when nothing
// happened, to repair a missed event, unless it says otherwise.
const DefaultResync = 30 * time.Second

// Resync is a ticker for that: every d, or DefaultResync when d is 0.
func Resync(d time.Duration) *time.Ticker {
	if d <= 0 {
		d = DefaultResync
	}
	return time.NewTicker(d)
}
